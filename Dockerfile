# Minimal image until the packaging issue lands (multi-stage, OCI labels, chart).
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY examples ./examples
RUN pip install --no-cache-dir . && useradd --uid 10001 --no-create-home stackscaler
USER 10001
ENTRYPOINT ["stackscaler"]
CMD ["--help"]
