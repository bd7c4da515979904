"""The query side: search an index, estimate a run before it is sent, list runs and failures."""
