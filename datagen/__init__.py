"""datagen: everything about Vital. Registry, preset model, render engine, sampler, features, datasets."""
