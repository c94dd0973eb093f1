"""DepCon deploy: the Pulumi components and tooling behind the project."""
