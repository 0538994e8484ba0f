# Waypost: one image for the web app, the worker and the migrate step.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 waypost
WORKDIR /app
COPY pyproject.toml README.md ./
COPY waypost ./waypost
COPY webhook ./webhook
COPY worker ./worker
COPY sql ./sql
COPY migrations ./migrations
# The package only: no dev or test extras in the image, and no dev tools (`waypost dev`, `simulate`,
# the fake Graph API) nor benchmark queries: waypost.devtools and their SQL are removed once installed; the
# runtime never imports them.
RUN pip install . && rm -rf /app/* \
    && python -c "import shutil, waypost.devtools as d, waypost.sql as s; \
shutil.rmtree(d.__path__[0]); (s.SQL_DIR / 'devtools.sql').unlink(); (s.SQL_DIR / 'bench.sql').unlink()"
USER waypost
ENV WAYPOST_HOST=0.0.0.0 WAYPOST_PORT=8000
EXPOSE 8000
CMD ["waypost", "serve"]
