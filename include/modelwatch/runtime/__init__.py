"""Running it locally: embedded S3 and Airflow, synthetic traffic, the command line."""
