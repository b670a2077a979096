"""Knowledge distillation for a fine-tune: the student fits (1 - alpha) x its own loss on the labels
(the training contract: training.loss / module_file) + alpha x its distance to a teacher's outputs.

The distance follows the head: KL(teacher || student) of the class distributions softened by a
temperature (x T^2, Hinton et al.) for a softmax head or a cross-entropy on logits; the mean squared
error to the teacher's outputs otherwise (an autoencoder, a regression, a sigmoid head). The teacher
is only read; the student is the model that is trained and saved (the wrapper is never saved)."""
import numpy as np

from collabopt.core.model import train
from collabopt.core.tfenv import keras, tf

KL, MSE = "kl", "mse"
SPARSE_CE = ("auto", "sparse_categorical_crossentropy")  # on logits: softmax(z / T) is the distribution


def distance_kind(model, x, training=train.TrainingSpec()):
    """KL for a classifier (a softmax head, or a sparse categorical cross-entropy on several logits),
    MSE otherwise; `x` a tf.data.Dataset of (features, targets) or arrays."""
    if train.outputs_probabilities(model, x):
        return KL
    features, _ = train.sample(x)
    width = np.asarray(model(features, training=False)).shape[-1]
    classifier = training.loss_fn is None and training.loss in SPARSE_CE and not train.reconstructs(x)
    return KL if classifier and width > 1 else MSE


def distance(teacher_out, student_out, kind, probabilities, temperature=1.0):
    """The per-batch distillation loss: KL(teacher || student) on softened distributions (x T^2), or MSE."""
    if kind == MSE:
        return tf.reduce_mean(tf.math.squared_difference(student_out, teacher_out))
    t = tf.cast(temperature, student_out.dtype)
    soften = (lambda p: tf.nn.softmax(tf.math.log(tf.maximum(p, 1e-7)) / t)) if probabilities else (
        lambda z: tf.nn.softmax(z / t))
    return tf.reduce_mean(keras.losses.kl_divergence(soften(teacher_out), soften(student_out))) * t * t


class Distiller(keras.Model):
    """Trains `student` (the only trainable part) on the compiled loss and the distance to `teacher`.
    Calling it is calling the student; logs 'loss' (the labels') and 'distill_loss'."""

    def __init__(self, student, teacher, alpha, kind, probabilities, temperature=1.0):
        super().__init__(name="distiller")
        self.student, self.teacher = student, teacher
        self.teacher.trainable = False
        self.alpha, self.kind, self.probabilities, self.temperature = float(alpha), kind, probabilities, temperature
        self.distill_tracker = keras.metrics.Mean(name="distill_loss")

    def call(self, x, training=None):
        return self.student(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        # the student's own regularization losses only: the teacher's are constants here
        own = self.compiled_loss(y, y_pred, sample_weight, regularization_losses=self.student.losses)
        d = distance(self.teacher(x, training=False), y_pred, self.kind, self.probabilities, self.temperature)
        self.distill_tracker.update_state(d)
        return (1.0 - self.alpha) * own + self.alpha * d

    @property
    def metrics(self):
        return [*super().metrics, self.distill_tracker]


def fit(student, teacher, x, *, alpha, temperature=1.0, training=train.TrainingSpec(), **fit_kwargs):
    """train.fit of `student` on the tf.data.Dataset `x` with alpha of its loss from `teacher`'s outputs
    (alpha 0: train.fit itself). The student's weights are trained in place; the student is returned."""
    if not alpha:
        train.fit(student, x, training=training, **fit_kwargs)
        return student
    kind = distance_kind(student, x, training)
    distiller = Distiller(student, teacher, alpha, kind, train.outputs_probabilities(student, x), temperature)
    train.log.info("[%s] distillation: alpha %.2f, %s to the teacher's outputs%s", fit_kwargs.get("stage", "fit"),
                   alpha, "KL" if kind == KL else "mean squared error",
                   f" (temperature {temperature:g})" if kind == KL else "")
    train.fit(distiller, x, training=training, **fit_kwargs)
    return student
