"""Training: self-distillation losses, augmentation and the early-stopping trainer."""

from scai.training.augment import Augmentation
from scai.training.losses import DISTILL_MODES, exit_losses
from scai.training.trainer import History, TrainConfig, Trainer, evaluate_exits

__all__ = ["Augmentation", "DISTILL_MODES", "exit_losses", "History", "TrainConfig", "Trainer", "evaluate_exits"]
