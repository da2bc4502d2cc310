"""Training engine: trainer and hooks, checkpoints, AMP, DDP, feature extraction, builders.

Import the pieces from their modules (``videoreid.engine.trainer.Trainer``,
``videoreid.engine.extract.extract_features``, ``videoreid.engine.builders.train_from_config``);
this package imports nothing eagerly so that ``import videoreid.engine`` stays cheap.
"""
