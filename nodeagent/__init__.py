"""What runs on every node: the SLO capacity registrar (depcon-slo).

Shipped to the nodes alone (roles/slo_capacity, as one archive): it imports
nothing of the controller's code. Its settings that come from versions.yml
(the resource name, the largest capacity) reach it from the role, through
the environment of its command.
"""
