"""Published Newton–Schulz coefficient tables, typed in from the sources (the
tests' independent reference; never read from the library)."""

# Keller Jordan's quintic, repeated every step.
JORDAN = (3.4445, -4.7750, 2.0315)
# modded-nanogpt early 2025 / Spectral Scaling Laws; optax's "dion" preset.
NANOGPT5 = ((4.0848, -6.8946, 2.9270), (3.9505, -6.3029, 2.6377), (3.7418, -5.5913, 2.3037),
            (2.8769, -3.1427, 1.2046), (2.8366, -3.0525, 1.2012))
# Polar Express (Amsel et al. 2025), 8 steps, before the 1.01 safety factor
# (applied to all but the last step).
POLAR_EXPRESS_8 = (
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
)
