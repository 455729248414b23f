"""modelwatch: production monitoring for fine-tuned models.

The library is layered; each module depends only on the ones listed before it:
``contract``, ``config`` -> ``storage``, ``readers`` -> ``validation``, ``metrics``
-> ``summary``, ``report``, ``rollback``. It never imports Airflow: DAG files call it.
"""

__version__ = "0.1.0"
