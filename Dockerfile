# Flowloom: the API (`flowloom serve`) and the queue worker (`flowloom worker`) in one image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/flowloom

COPY pyproject.toml README.md ./
COPY app ./app
COPY graphs ./graphs
COPY nodes ./nodes
RUN pip install . && useradd --create-home --uid 10001 flowloom
USER flowloom

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
CMD ["flowloom", "serve", "--host", "0.0.0.0", "--port", "8000"]
