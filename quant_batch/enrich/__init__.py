"""Chat enrichment: a Jinja2 prompt per catalog row → the chat API → a typed DuckDB table.

config   EnrichConfig: catalog folder, source, template, model settings, schema, limits
prompt   the sandboxed template, the chat request, template hash and unit keys
source   the source query over the catalog and the plan of rows still to send
worker   chat calls, schema validation with one repair retry, Parquet parts
run      the single writer: lock, ledger, catalog loads, run summary
"""

from quant_batch.enrich.config import EnrichConfig, load_enrich_config
from quant_batch.enrich.run import EnrichRun, enrich_table

__all__ = ["EnrichConfig", "EnrichRun", "enrich_table", "load_enrich_config"]
