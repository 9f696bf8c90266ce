"""The model zoo: VGG11/13/16/19, MLPs (LeNet-300-100), ResNet-20/56/18 and the initialisers.

Functional core in :mod:`.models`, :mod:`.resnet` and :mod:`.init`; this module only declares
options and registers components.
"""

from __future__ import annotations

import functools

import attrs

import stratum
from stratum import option

# Only the light tables here: registration must not import torch. The factories below
# import .models and .init when a run calls them.
from .layouts import ACTIVATION_CLASSES, POOLING_RULES, VGG_LAYOUTS


# Each component declares exactly the options it reads (help, `stratum bench` axes and the run
# summary follow the declarations). Options that several models read are declared once here and
# used by each (identical declarations may be shared across components).
def _width():
    return option(1.0, "Channel-width multiplier for conv models.", min=0, min_exclusive=True, max=16)


def _batch_norm():
    return option(False, "Insert batch norm after each conv / hidden linear layer.")


def _dropout():
    return option(0.0, "Dropout probability before classifier / after hidden layers.", min=0, max=1, max_exclusive=True)


def _activation():
    return option("relu", "Hidden-layer nonlinearity.", choices=tuple(ACTIVATION_CLASSES))


@attrs.frozen
class VGGOptions:
    """Options of vgg11/13/16/19."""

    width: float = _width()
    batch_norm: bool = _batch_norm()
    dropout: float = _dropout()
    activation: str = _activation()
    classifier_hidden: int = option(0, "VGG: width of a hidden classifier layer (0 = one linear layer).", min=0)
    vgg_pooling: str = option(
        "live", "VGG: 'live' skips a 2x2 max-pool that would leave a conv on a 1x1 map (no dead weights); "
        "'legacy' pools while the map is >= 2 pixels (the geometry before the live rule: on 8x8 digits ~80% of the "
        "weights never get a gradient).", choices=POOLING_RULES,
    )


@attrs.frozen
class MLPModelOptions:
    """Options of mlp."""

    hidden: tuple = option((300, 100), "MLP hidden layer sizes, comma-separated.", type=int, multiple=True, min=1)
    batch_norm: bool = _batch_norm()
    dropout: float = _dropout()
    activation: str = _activation()


@attrs.frozen
class LeNetOptions:
    """Options of lenet300 (its hidden sizes are fixed at 300, 100)."""

    batch_norm: bool = _batch_norm()
    dropout: float = _dropout()
    activation: str = _activation()


@attrs.frozen
class CifarResNetOptions:
    width: float = _width()
    resnet_shortcut: str = option(
        "A", "CIFAR ResNets: shortcut where the shape changes: A = identity, subsampled and zero-padded (He et al. "
        "2016's CIFAR choice, no parameters); B = 1x1 convolution + batch norm projection.", choices=("A", "B"),
    )


@attrs.frozen
class ResNet18Options:
    width: float = _width()


@attrs.frozen
class HeInitOptions:
    init_mode: str = option("fan_in", "he-normal: preserve variance forward (fan_in) or backward (fan_out).", choices=("fan_in", "fan_out"))


@attrs.frozen
class GainInitOptions:
    init_gain: float = option(1.0, "xavier / orthogonal gain.", min=0, min_exclusive=True)


def _vgg_factory(name, spec, options: VGGOptions):
    from .models import build_vgg

    return build_vgg(
        name, spec.input_shape, spec.num_outputs, width=options.width, batch_norm=options.batch_norm,
        dropout=options.dropout, hidden=options.classifier_hidden, activation=options.activation,
        pooling=options.vgg_pooling,
    )


def _mlp_factory(spec, options: MLPModelOptions):
    from .models import build_mlp

    return build_mlp(spec.input_shape, spec.num_outputs, options.hidden, batch_norm=options.batch_norm,
                     dropout=options.dropout, activation=options.activation)


def _lenet_factory(spec, options: LeNetOptions):
    from .models import build_mlp

    return build_mlp(spec.input_shape, spec.num_outputs, (300, 100), batch_norm=options.batch_norm,
                     dropout=options.dropout, activation=options.activation)


_CONV_COUNTS = {"vgg11": 8, "vgg13": 10, "vgg16": 13, "vgg19": 16}


@stratum.hookimpl
def stratum_register_models():
    models = [
        stratum.model(
            name, functools.partial(_vgg_factory, name),
            f"VGG with {_CONV_COUNTS[name]} conv layers; --width, --batch-norm; pools skipped so no conv runs on a 1x1 map.",
            options=VGGOptions, info={"conv_layers": _CONV_COUNTS[name]},
        )
        for name in VGG_LAYOUTS
    ]
    models.append(stratum.model("mlp", _mlp_factory, "Fully connected net; --hidden sizes (default 300,100).", options=MLPModelOptions))
    models.append(stratum.model("lenet300", _lenet_factory, "LeNet-300-100, the lottery-ticket paper's MLP.", options=LeNetOptions))
    # Residual networks (plugins/zoo/resnet.py), imported when a run builds one.
    models += [
        stratum.model("resnet20", "stratum_plugins.zoo.resnet:resnet20_model",
                      "CIFAR ResNet-20 (He et al. 2016): 3x3 blocks on 16-32-64 channels, option A shortcuts "
                      "(--resnet-shortcut B); 0.27 M parameters; --width.", options=CifarResNetOptions),
        stratum.model("resnet56", "stratum_plugins.zoo.resnet:resnet56_model",
                      "CIFAR ResNet-56 (He et al. 2016): as resnet20 with 9 blocks per stage; 0.85 M parameters; --width.",
                      options=CifarResNetOptions),
        stratum.model("resnet18", "stratum_plugins.zoo.resnet:resnet18_model",
                      "ResNet-18 for 32x32 (3x3 stride-1 stem, no max-pool, projection shortcuts); 11.2 M parameters; --width.",
                      options=ResNet18Options),
    ]
    return models


def _he(model, options: HeInitOptions, generator):
    from . import init as inits

    inits.he_normal_(model, generator, mode=options.init_mode)


def _xavier(model, options: GainInitOptions, generator):
    from . import init as inits

    inits.xavier_normal_(model, generator, gain=options.init_gain)


def _orthogonal(model, options: GainInitOptions, generator):
    from . import init as inits

    inits.orthogonal_(model, generator, gain=options.init_gain)


def _default(model, options, generator):
    from . import init as inits

    inits.torch_default_(model, generator)


@stratum.hookimpl
def stratum_register_initializers():
    return [
        stratum.initializer("he-normal", _he, "He normal N(0, 2/fan) (the paper's default); --init-mode fan_in|fan_out.", options=HeInitOptions),
        stratum.initializer("xavier", _xavier, "Glorot normal N(0, 2/(fan_in+fan_out)) times --init-gain.", options=GainInitOptions),
        stratum.initializer("orthogonal", _orthogonal, "(Semi-)orthogonal weights via QR, times --init-gain.", options=GainInitOptions),
        stratum.initializer("default", _default, "torch's built-in per-layer initialisation."),
    ]
