"""modelwatch: production monitoring for fine-tuned models. Start reading at ``modelwatch/stages.py``.

``stages`` lists the stages of a run in order and the contract each keeps (``<package>/stage.py``:
NAME, NEEDS, run); ``runner`` runs them, inside Airflow (``dags/common/monitoring.py``) or not.
Each stage is a package (ingest, profile, drift, concept, judge, experiments, publish) over the
layers below it: ``core`` (contract, metric names, assignment, redaction, partitions), ``config``,
``storage`` (S3, object keys), ``ingest``, ``baseline``, ``estimation``, ``observe``. The library
never imports Airflow; ``serving`` (the client side) imports only ``core``. The layers are checked
by import-linter (``[tool.importlinter]`` in pyproject.toml).
"""

__version__ = "0.1.0"
