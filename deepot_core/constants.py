"""Numbers that matter, defined once, each explained in one line."""

#: Default latent patch size p (odd): 3×3 patches, as in the DOT paper.
DEFAULT_PATCH_SIZE = 3
#: Largest patch size accepted: D = C·p² grows fast (16 ch · 81 = 1296 dims).
MAX_PATCH_SIZE = 9
#: Largest feature dimension D = C·p² we fit; beyond it eigendecompositions take minutes.
MAX_FEATURE_DIM = 4096

#: Eigenvalue floor of the source covariance, relative to its mean eigenvalue.
#: Directions with less variance than this get the floor, so the inverse root
#: stays bounded (gain at most sqrt(λt / (eps·mean λs))) on flat or rank-deficient data.
DEFAULT_EPS = 1e-4
#: Absolute floor under the relative one, for an all-constant source (mean eigenvalue 0).
ABSOLUTE_EIGEN_FLOOR = 1e-12

#: Strength / perception range: −1 (away from natural) .. 2 (extrapolate past the transport).
STRENGTH_MIN, STRENGTH_MAX = -1.0, 2.0

#: Fewer samples than this many per feature dimension and the fit is flagged as noisy.
SAMPLES_PER_DIM_WARNING = 10

#: Elements of one unfolded strip [D, rows·W] kept in memory at once while accumulating statistics.
STATS_STRIP_ELEMENTS = 1 << 24

#: Default Gaussian σ (pixels) of the detail band: keep only Δ − G_σ∗Δ of the residual.
DEFAULT_DETAIL_SIGMA = 2.0
#: PD Blend's natural slope per pyramid level, finest first (see blend.py): rounded from the level-energy ratios
#: of Kodak24 (1.60/0.99/0.87) and of the CBSD68 fit photos (1.54/0.89/0.72).
DEFAULT_NATURAL_SLOPES = (1.5, 1.0, 0.9)
#: PD Blend's natural floor per pyramid level, finest first: the lower quartile of the photos' finest-level ratio
#: (Kodak24 1.25, CBSD68 1.20); a decoder that under-renders the transport has its finest band raised to it.
DEFAULT_NATURAL_FLOORS = (1.2,)
#: Most the floor may amplify the transported detail: beyond twice, the band is the decoder's failure, not detail.
NATURAL_FLOOR_MAX_GAIN = 2.0

#: Shape β of the generalised Gaussian that photos' finest Laplacian level follows, per image RMS-normalised: all
#: of CBSD68, Kodak24 and Set14 pooled (kurtosis 14.1; alone 0.66 / 0.58 / 0.63; benchmarks/natural_marginal.py).
#: PD Blend can give the detail it adds this marginal (``natural_marginal``, blend.py). Off by default: it brings
#: SWD down in every space but makes NIQE worse (docs/natural_marginal.md).
NATURAL_MARGINAL_SHAPE = 0.63

#: Version of the .safetensors transport file layout; bump on incompatible change.
FILE_FORMAT_VERSION = 1
#: Marker stored in every transport file's metadata, so foreign files are recognised.
FILE_FORMAT_NAME = "deepot.latent_transport"
