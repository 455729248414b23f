"""Running it locally: embedded S3 and Airflow, synthetic traffic, the command line, and `modelwatch try` on a folder of logs."""
