"""A recipe's stages as objects: teacher, knowledge, domain FM, baseline, student and evaluation.

Each stage declares its inputs (the stages whose outputs it reads), computes its key from its own
settings and its inputs' keys (through `transfer.pipeline.keys`, the single owner of keys), says
whether the stage cache already holds its output (`status`), and runs, leaving its result in
`output`. Keys need no stage to have run, so `gem-transfer plan` shows every key before anything runs.
`base.py`: the Stage protocol; `producers.py`: teacher, knowledge, domain FM; `verticals.py`: baseline,
student; `evaluation.py`: the lift table. `transfer.pipeline.plan` builds them from a recipe;
`transfer.pipeline.engine` runs them in order.
"""
