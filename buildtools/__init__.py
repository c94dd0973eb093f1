"""Controller-side build tooling: the machine setup, the Pulumi engine, the Kubernetes bundle."""
