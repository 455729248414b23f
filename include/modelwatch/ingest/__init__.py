"""Logs and labels in: readers, the columnar coercion, GX validation, shards; the extract and validate stages."""
