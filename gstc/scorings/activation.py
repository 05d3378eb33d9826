"""activation_l1: a moving average of each channel's L1 activation, recorded on training batches."""

from __future__ import annotations

from gstc.plugins import NoParams

EMA_WEIGHT = 0.1  # weight of the new value in the moving average
EMA_EVERY = 10  # recorded on every 10th training batch (the 1st, 11th, ...): cheap, and enough for a ranking


class ActivationL1:
    description = ("activation_l1: moving average of the channel's activation L1 norm (over training batches, "
                   "after its BN).")
    Params = NoParams
    granularities = frozenset({"filter"})

    @staticmethod
    def check(params, use):
        out = []
        if use.epochs and use.epochs[0] == 0:
            out.append("activation_l1 scores come from training batches, so they cannot choose filters at epoch 0 "
                       "(before any training); use a weight scoring such as l1 for scratch pruning")
        coupled = [layer for layer in use.layers if layer.coupled]
        if coupled:
            group = sorted([coupled[0].name, *coupled[0].coupled])
            out.append(f"{', '.join(group)} write the same channels (a residual sum adds "
                       "them): activation_l1 reads one conv's output, and these channels are a sum of several; use a "
                       "weight scoring (l1, l2) or ebn")
        return out

    @staticmethod
    def setup(units, params):
        def record(x):
            if units.batch % EMA_EVERY != 0 or not units.training:
                return
            value = x.detach().abs().float().sum(dim=(0, 2, 3))
            ema = units.state.get("ema")
            units.state["ema"] = value if ema is None else (1 - EMA_WEIGHT) * ema + EMA_WEIGHT * value

        units.record_channels(record)

    @staticmethod
    def score(units, params):
        ema = units.state.get("ema")
        if ema is None:
            raise RuntimeError(f"{units.name}: activation_l1 scoring needs at least one training batch before the event")
        return ema.clone()
