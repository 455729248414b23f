"""S3 access (``s3``) and where every output lives (``keys``)."""
