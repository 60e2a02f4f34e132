using TorchSharp;

namespace CondenseCluster.Shared.Model;

/// <summary>
/// Scalars handed to native calls in every step, kept alive for the whole process. A temporary one (TorchSharp makes
/// one for an omitted <c>alpha</c>, or for a number converted implicitly) can be finalized by the GC while the native
/// call still reads it, which then sees freed memory: a worker failed once with "For integral input tensors, argument
/// alpha must not be a floating point number" counting BatchNorm batches.
/// </summary>
static class KeptScalars
{
    public static readonly Scalar One = 1L.ToScalar();
    /// <summary>The share of a BatchNorm running statistic kept, and the share a batch's statistic adds, per training step.</summary>
    public static readonly Scalar BatchNormKeep = (1 - BatchNorm.Momentum).ToScalar(), BatchNormRate = BatchNorm.Momentum.ToScalar();
}
