# Astro Runtime 3.3 (Apache Airflow 3.3). The project's dependencies come from the lock file,
# so the image resolves exactly what the tests ran against.
FROM astrocrpublic.azurecr.io/runtime:3.3-2

ENV MODELWATCH_CONFIG=/usr/local/airflow/include/config/modelwatch.yaml \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

COPY --chown=astro:0 requirements.lock pyproject.toml README.md ./
COPY --chown=astro:0 include ./include
RUN pip install --no-cache-dir -r requirements.lock \
 && pip install --no-cache-dir --no-deps -e .
