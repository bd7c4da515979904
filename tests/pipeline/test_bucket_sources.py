"""Sources and manifests in a bucket (issue 15, item 1, input side), on a real S3 server (moto).

Every test embeds or renders with the emulator into a local output folder through the public
API or the CLI, and checks ids, calls and messages against the local rules.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path

import pytest
from typer.testing import CliRunner

import quant_batch
from quant_batch.cli import app
from quant_batch.corpus.sources import iter_sources, require_documents
from quant_batch.embed.config import resolve_corpus_config
from quant_batch.errors import InputError, StorageError
from quant_batch.store.storage_config import StorageConfig
from tests.s3 import ACCESS_KEY, BUCKET, aws_env, boto_client, start_moto_process

from .conftest import api_calls, query

ALPHA = "Alpha opening hours: the observatory opens at nine on Saturdays for telescope viewing.\n"
ALPHA_EDITED = "Alpha moved: the observatory now opens at noon on Sundays for solar viewing only.\n"
BETA = "Beta borrowing rules: members may borrow twelve books for three weeks each.\n"
GAMMA = "<html><body><h1>Gamma</h1><p>The garden plots are allocated every March by lottery.</p></body></html>"
SAMPLE = Path(quant_batch.__file__).parent / "data" / "sample"


def put(endpoint: str, objects: dict[str, bytes | str]) -> None:
    s3 = boto_client(endpoint)
    for key, body in objects.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode() if isinstance(body, str) else body)


def live(out: Path) -> list[tuple]:
    return query(out, "SELECT DISTINCT doc_id, source_path FROM live_chunks ORDER BY doc_id")


@pytest.fixture
def docs(s3_env) -> str:
    """A prefix with two documents, a hidden one, an unsupported one and a table (skipped)."""
    put(
        s3_env,
        {
            "docs/alpha.md": ALPHA,
            "docs/sub/gamma.html": GAMMA,
            "docs/.drafts/hidden.md": "never read",
            "docs/notes.xyz": "not a document type",
            "docs/table.csv": "id,text\n1,rows are not documents of a folder\n",
            "other/beta.md": BETA,
        },
    )
    return f"s3://{BUCKET}/docs/"


def test_bucket_folder_embeds_reruns_free_and_follows_edits_and_deletes(docs, s3_env, api_env, tmp_path):
    out = tmp_path / "index"
    first = quant_batch.embed(docs, out=out, prefect=False)
    assert first.status == "completed" and api_calls(api_env) > 0
    assert live(out) == [
        ("docs/alpha.md", f"s3://{BUCKET}/docs/alpha.md"),
        ("docs/sub/gamma.html", f"s3://{BUCKET}/docs/sub/gamma.html"),
    ]
    (meta,) = query(out, "SELECT metadata FROM live_chunks WHERE doc_id = 'docs/sub/gamma.html'")
    meta = json.loads(meta[0]) if isinstance(meta[0], str) else meta[0]
    assert meta["path"] == "docs/sub/gamma.html" and meta["extension"] == ".html"
    assert meta["modified"].startswith("20") and meta["modified"].endswith("+00:00")

    api_env.reset()
    again = quant_batch.embed(docs, out=out, prefect=False)
    assert again.status == "completed" and api_calls(api_env) == 0
    assert again.stats["chunks_unchanged"] == again.stats["chunks_total"] > 0

    put(s3_env, {"docs/alpha.md": ALPHA_EDITED})
    boto_client(s3_env).delete_object(Bucket=BUCKET, Key="docs/sub/gamma.html")
    api_env.reset()
    third = quant_batch.embed(docs, out=out, prefect=False)
    assert third.status == "completed"
    assert api_calls(api_env) == 1 and third.stats["chunks_removed"] >= 1  # one chunk of one edited text
    assert live(out) == [("docs/alpha.md", f"s3://{BUCKET}/docs/alpha.md")]
    (text,) = query(out, "SELECT text FROM live_chunks")
    assert text[0] == ALPHA_EDITED.strip()


def test_include_exclude_pick_the_same_objects_as_a_local_folder(docs, s3_env, tmp_path):
    """One glob rule: a copy of the bucket prefix on disk yields the same ids under the same globs."""
    local = tmp_path / "docs"
    copy = {"alpha.md": ALPHA, "sub/gamma.html": GAMMA, ".drafts/hidden.md": "x", "notes.xyz": "x", "table.csv": "x"}
    for key, body in copy.items():
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        (local / key).write_text(body)
    for include, exclude in [(("**/*",), ()), (("*.md",), ()), (("**/*.html",), ()), (("**/*",), ("sub/**",))]:
        sources = []
        for path in (docs, str(local)):
            sources.append(
                resolve_corpus_config(path).sources[0].model_copy(update={"include": include, "exclude": exclude})
            )
        remote, here = ([item.doc_id for item in iter_sources([s])] for s in sources)
        assert remote == here, (include, exclude)
        assert require_documents([sources[0]]).describe() == require_documents([sources[1]]).describe()


def test_two_prefixes_with_a_readme_each_are_two_documents(s3_env, api_env, tmp_path):
    put(s3_env, {"a/README.md": ALPHA, "b/README.md": BETA})
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"sources:\n  - path: s3://{BUCKET}/a/\n  - path: s3://{BUCKET}/b\nout: {tmp_path / 'index'}\n")
    assert quant_batch.embed(cfg, prefect=False).status == "completed"
    assert live(tmp_path / "index") == [
        ("a/README.md", f"s3://{BUCKET}/a/README.md"),
        ("b/README.md", f"s3://{BUCKET}/b/README.md"),
    ]


def test_table_and_single_document_in_a_bucket(s3_env, api_env, tmp_path):
    rows = [{"id": "q1", "text": BETA}, {"id": "q2", "text": ALPHA}]
    put(s3_env, {"t/faq.jsonl": "\n".join(json.dumps(r) for r in rows) + "\n", "one/guide.md": ALPHA})
    out = tmp_path / "index"
    assert quant_batch.embed(f"s3://{BUCKET}/t/faq.jsonl", out=out, prefect=False).status == "completed"
    uri = f"s3://{BUCKET}/t/faq.jsonl"
    assert live(out) == [("faq.jsonl#q1", uri), ("faq.jsonl#q2", uri)]

    single = tmp_path / "single"
    assert quant_batch.embed(f"s3://{BUCKET}/one/guide.md", out=single, prefect=False).status == "completed"
    assert live(single) == [("guide.md", f"s3://{BUCKET}/one/guide.md")]


def test_table_in_a_bucket_names_the_uri_and_line_of_a_bad_row(s3_env, api_env, tmp_path):
    put(s3_env, {"t/faq.jsonl": json.dumps({"id": "q1", "text": BETA}) + "\n{not json\n"})
    uri = f"s3://{BUCKET}/t/faq.jsonl"
    summary = quant_batch.embed(uri, out=tmp_path / "index", prefect=False)
    assert summary.stats["documents_failed"] == 1
    (row,) = query(tmp_path / "index", "SELECT source_path, line, message FROM errors")
    assert row[:2] == (uri, 2) and "invalid JSON" in row[2]

    put(s3_env, {"t/bad.csv": "id,body\n1,x\n"})
    with pytest.raises(InputError, match=rf"^s3://{BUCKET}/t/bad.csv: column 'text' not found"):
        quant_batch.embed(f"s3://{BUCKET}/t/bad.csv", out=tmp_path / "index", prefect=False)


def cli(*args: str) -> tuple[int, list[str]]:
    """Exit code and the lines the command printed (stdout and stderr), progress bar left out."""
    result = CliRunner().invoke(app, list(args))
    lines = result.output.splitlines()
    return result.exit_code, [line for line in lines if line.strip() and not line.startswith("embedding ")]


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("s3://no-such-bucket-qb/docs/", "s3://no-such-bucket-qb/docs: no such bucket"),
        (f"s3://{BUCKET}/empty/", f"s3://{BUCKET}/empty: no objects under this prefix"),
        (f"s3://{BUCKET}/t/missing.csv", f"s3://{BUCKET}/t/missing.csv: no such object"),
    ],
)
def test_missing_bucket_prefix_or_object_is_one_line_naming_the_uri(s3_env, api_env, tmp_path, target, says):
    code, lines = cli("embed", target, "--out", str(tmp_path / "index"), "--no-prefect")
    assert code == 2 and len(lines) == 1 and says in lines[0], lines
    assert api_calls(api_env) == 0


def test_wrong_secret_fails_naming_the_uri_and_never_the_secret(api_env, monkeypatch, tmp_path):
    """A server that checks signatures: the right key reads the bucket, a wrong secret stops cleanly."""
    import boto3

    with start_moto_process(INITIAL_NO_AUTH_ACTION_COUNT="4") as endpoint:
        admin = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY)
        iam = boto3.client("iam", aws_secret_access_key="setup", **admin)
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        policy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
        iam.put_user_policy(UserName="reader", PolicyName="all", PolicyDocument=policy)
        boto3.client("s3", aws_secret_access_key="setup", **admin).create_bucket(Bucket=BUCKET)
        reader = {**admin, "aws_access_key_id": key["AccessKeyId"]}  # signatures are checked from here on
        s3 = boto3.client("s3", aws_secret_access_key=key["SecretAccessKey"], **reader)
        s3.put_object(Bucket=BUCKET, Key="docs/alpha.md", Body=ALPHA.encode())

        wrong = "WRONG-s3cret-for-sources-0123456789"
        aws_env(monkeypatch, endpoint, secret=wrong)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        uri = f"s3://{BUCKET}/docs/"
        code, lines = cli("embed", uri, "--out", str(tmp_path / "index"), "--no-prefect")
        assert code == 2 and len(lines) == 1, lines
        assert f"s3://{BUCKET}/docs" in lines[0] and "AWS_SECRET_ACCESS_KEY" in lines[0]
        leaked = [p for p in tmp_path.rglob("*") if p.is_file() and wrong.encode() in p.read_bytes()]
        assert wrong not in lines[0] and not leaked

        # the storage: block is what opens the sources: right keys there win over the wrong env
        block = StorageConfig(access_key_id=key["AccessKeyId"], secret_access_key=key["SecretAccessKey"])
        cfg = resolve_corpus_config(uri, storage=block)
        assert [d.doc_id for d in iter_sources(cfg.sources, cfg.storage)] == ["docs/alpha.md"]
        with pytest.raises(StorageError) as info:
            require_documents(cfg.sources)  # no block: the wrong env secret
        text = "".join(traceback.format_exception(info.value))
        assert wrong not in text and f"s3://{BUCKET}/docs" in str(info.value)


def test_render_manifest_in_a_bucket_with_relative_input_images(s3_env, api_env, tmp_path):
    images = SAMPLE / "images"
    rows = [
        {"id": "fox", "prompt": "a red fox", "width": 320, "height": 320},
        {"id": "mug-cutout", "task": "BACKGROUND_REMOVAL", "image": "images/mug_red.png"},
        {
            "id": "mug-vars",
            "task": "IMAGE_VARIATION",
            "prompt": "a mug",
            "images": ["images/mug.png", "../shared/palette.png"],
        },
        {"id": "gone", "task": "BACKGROUND_REMOVAL", "image": "images/missing.png"},
    ]
    put(
        s3_env,
        {
            "render/prompts.jsonl": "\n".join(json.dumps(r) for r in rows) + "\n",
            "render/images/mug_red.png": (images / "mug_red.png").read_bytes(),
            "render/images/mug.png": (images / "mug.png").read_bytes(),
            "shared/palette.png": (images / "palette.png").read_bytes(),
        },
    )
    uri = f"s3://{BUCKET}/render/prompts.jsonl"
    with pytest.raises(InputError, match=rf"{uri}:4: .*file not found: images/missing.png \(looked at s3://"):
        quant_batch.render(uri, out=tmp_path / "renders", prefect=False)

    out = tmp_path / "renders"
    summary = quant_batch.render(uri, out=out, prefect=False, skip_invalid=True)
    assert summary.status == "errors" and summary.stats["rows"] == 4, summary.stats  # one invalid row
    assert {p.name.split("_")[0] for p in out.glob("*.png")} >= {"fox", "mug-cutout", "mug-vars"}
    (error,) = query(out, "SELECT source_path, line FROM errors")
    assert error == (uri, 4)

    api_env.reset()  # the input images are hashed into the row keys: a rerun sends nothing
    quant_batch.render(uri, out=out, prefect=False, skip_invalid=True)
    assert api_calls(api_env, "images") == 0


def test_plan_and_replay_route_bucket_targets_by_their_columns(s3_env):
    from quant_batch.targets import target_kind

    client = boto_client(s3_env)
    client.put_object(Bucket=BUCKET, Key="t/texts.jsonl", Body=b'{"id": "a", "text": "hello"}\n')
    client.put_object(Bucket=BUCKET, Key="t/prompts.jsonl", Body=b'{"id": "a", "prompt": "a red bicycle"}\n')
    assert target_kind(f"s3://{BUCKET}/t/texts.jsonl") == "corpus"
    assert target_kind(f"s3://{BUCKET}/t/prompts.jsonl") == "render"
    assert target_kind(f"s3://{BUCKET}/t/") == "corpus"
    planned = quant_batch.plan(f"s3://{BUCKET}/t/prompts.jsonl", out=f"s3://{BUCKET}/renders")
    assert planned["kind"] == "render" and planned["rows_new"] == 1
