

# training methods that register themselves (objectives register through robustlab.train.objectives)
from robustlab.train import adversary_critic  # noqa: E402,F401
