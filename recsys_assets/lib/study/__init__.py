"""The study the product exists for (docs/study.md): which encoder lifts cold start, at what cost.

- :mod:`cost`: what an encoder costs on this machine (parameters, dimension, texts/s and seconds
  to encode the catalogue, bytes of vectors), measured once per model version.
- :mod:`plan`: which encoders and item-text variants one study run switches on.
- :mod:`new_users`: the categorical-attribute baseline of new users (popularity among users
  who share the new user's profile attributes).
- :mod:`tables`: the ``reports.encoder_study``, ``reports.fusion_ablation`` and
  ``reports.new_user_text`` rows of a window, from the per-user evaluation through the
  existing lift statistics (``evaluation.lift.lift_rows``).
"""
