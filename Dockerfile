# Worker (and client) image for adhunt on a cluster or a dask-gateway: see docs/cluster.md.
#   docker build -t adhunt:0.1.0 .
#   apptainer build adhunt.sif apptainer.def      (the same steps, without docker)
# dask-jobqueue / dask-gateway start workers with `python -m distributed.cli.dask_worker ...`,
# so the image needs no entry point: the python on PATH has adhunt, dask and dask-gateway.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# torch first, the CPU build: an unpinned torch from PyPI pulls GBs of CUDA libraries.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

WORKDIR /opt/adhunt
COPY pyproject.toml README.md ./
COPY adhunt ./adhunt
COPY processors ./processors
COPY models ./models
COPY jobs ./jobs
RUN pip install --prefer-binary ".[gateway]" && adhunt --help > /dev/null

WORKDIR /work
CMD ["adhunt", "--help"]
