"""tenantsvc: a schema-per-tenant SaaS backend on PostgreSQL."""
