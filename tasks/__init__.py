"""Tasks: the unit of work an agent handles, queues, agents' routing state, offers and dispositions."""
