"""Neural character models (MLP, WaveNet-style CNN, GRU, Transformer) behind the model protocol.

`common` holds the settings and the glue every family shares, one module per family holds its
network, `families` names them; harness.evaluation scores (exactly, over whole splits) and samples them
as it does every LanguageModel.
Training lives in `harness.train.neural`.
"""
