"""The demo: ``python manage.py seed_demo`` (training/management/commands/seed_demo.py) fills a fresh install from
``prompts.jsonl`` (the demo prompts and responses) and ``reference.json`` (a reference judgement of every response,
which sets the gold answers and drives the simulated raters), then runs the loop's steps (``loop.py``).
"""
