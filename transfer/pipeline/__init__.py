"""The pipeline: stage keys, the content-addressed stage cache, stages as objects, the engine that plans and runs a recipe, the continuous cycle."""
