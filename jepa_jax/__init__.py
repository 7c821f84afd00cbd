"""jepa_jax: JEPA world models in JAX/Flax."""
