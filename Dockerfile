# One image for every apirelay process; compose.yaml picks the command per service.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY apirelay ./apirelay
COPY services ./services
COPY edge ./edge
COPY cli ./cli
COPY bench ./bench
RUN pip install --no-cache-dir .
COPY apirelay.yaml /etc/apirelay/apirelay.yaml
RUN mkdir -p /var/lib/apirelay && chown nobody /var/lib/apirelay
ENV APIRELAY_CONFIG=/etc/apirelay/apirelay.yaml APIRELAY_HOME=/var/lib/apirelay
USER nobody
