"""Shared by all controller code: configuration, paths, the playbook runner, the proof judge."""
