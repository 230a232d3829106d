# tenantsvc service image: slim Python, no dev dependencies, runs as an unprivileged user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY tenantsvc ./tenantsvc
COPY cli ./cli
RUN pip install --no-cache-dir --prefix=/install -c constraints.txt .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    TENANTSVC_ALEMBIC_INI=/app/alembic.ini
RUN useradd --system --uid 10001 --home-dir /app tenantsvc
COPY --from=build /install /usr/local
WORKDIR /app
COPY alembic.ini ./
COPY migrations ./migrations
USER tenantsvc
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"]
CMD ["tenantctl", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
