"""From a playbook to a plan: tasks and their operations, the graph, selection, the plan."""
