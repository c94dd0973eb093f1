"""The Pulumi program's components: what `pulumi up` composes in __main__.py."""
