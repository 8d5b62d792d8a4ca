# The builder image, for the chart's retrain CronJob (retrain.image): the project and its pinned build
# dependencies (requirements.txt: torch, LightGBM, the offline encoder, the kubernetes client), run as
# `python -m retrain ... --volume /volume --kube-release NAME --in-cluster`. Build from the repository root:
#   docker build -f helm/image/Dockerfile.builder -t REGISTRY/shoprank/builder:0.1.0 .
# NOT BUILT OR RUN ON THE PROJECT'S MACHINES: they have no container engine (see helm/README.md); the same
# install (requirements.txt with constraints.txt) is what `make setup` and CI run.
FROM python:3.11-slim
WORKDIR /opt/shoprank
COPY requirements.txt constraints.txt ./
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir -r requirements.txt -c constraints.txt
COPY builders/ builders/
COPY runtime/ runtime/
COPY rollout/ rollout/
COPY server/ server/
COPY retrain/ retrain/
COPY client/ client/
COPY model_repository/ model_repository/
RUN pip install --no-cache-dir --no-deps ./client
ENV PYTHONPATH=/opt/shoprank
USER 1000:1000
