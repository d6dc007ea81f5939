"""DeepZoo's model zoo as a plain PyTorch library.

Each family (``models.mlp``, ``models.mc_dropout``, ...) is one module ending in
a ``FAMILY`` record (``models.family.Family``): its hyperparameters, datasets,
``build``, ``fit`` and capabilities (each mapped to its inference function). A family
that holds a second reusable concept is a package instead (``models.gan``,
``models.flow``), its ``FAMILY`` in ``family.py`` and re-exported by the package.
``models.registry`` maps names to families, ``models.data`` holds the built-in datasets
with fixed splits, ``models.optim`` the optimizers every job chooses from, ``models.loop``
the shared training loop, ``models.layers`` and ``models.nets`` the shared building
blocks, and ``models.context.LocalContext`` runs a ``fit`` without the service::

    from models.context import LocalContext
    from models.data import load
    from models.family import Capability
    from models.registry import get_family

    family, data = get_family("mc_dropout"), load("sine_gap")
    params = family.params()
    module = family.build(params, data.info)
    family.fit(module, data, params, LocalContext(epochs=200))
    predict = family.capability(Capability.PREDICT)
    predict(module, data.x_test, 50)  # mean, epistemic_var, aleatoric_var, ...

Nothing here imports ``app`` or ``workers``; importing ``models`` itself is cheap.
"""
