using TorchSharp;
using static TorchSharp.torch;
using static CondenseCluster.Shared.Model.TensorSpans;

namespace CondenseCluster.Shared.Model;

/// <summary>
/// <see cref="BatchNormReluKernel"/> as an autograd function of (input, weight, bias). It also updates the running
/// statistics in place, as BN's training forward does (momentum, unbiased variance). Saves the input and the batch
/// statistics for backward, no output: the ReLU mask is recomputed.
/// </summary>
public sealed class BatchNormReluFunction : autograd.SingleTensorFunction<BatchNormReluFunction>
{
    /// <summary>The running statistics to update with <see cref="BatchNorm.Momentum"/> (not an input of the gradient).</summary>
    public sealed record RunningStatistics(Tensor Mean, Tensor Variance);

    public override string Name => "BatchNormRelu";

    /// <summary>Whether the kernel can take this input: one <see cref="TensorSpans.FitsCpuKernel"/> of rank ≥ 2, more than one value per channel.</summary>
    public static bool Supports(Tensor input) =>
        TensorSpans.FitsCpuKernel(input) && input.dim() >= 2 && input.numel() > input.shape[1];

    public static Tensor Apply(Tensor input, Tensor weight, Tensor bias, RunningStatistics running) =>
        apply(input, weight, bias, running);

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (x, weight, bias, running) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (RunningStatistics)vars[3]);
        var layout = Layout(x);
        var y = torch.empty_like(x);
        var stats = torch.empty(3, layout.Channels); // mean, 1/√(var+eps), biased variance
        var s = Floats(stats);
        int c = layout.Channels;
        BatchNormReluKernel.Forward(Floats(x), Floats(y), layout, Floats(weight), Floats(bias),
            s[..c], s.Slice(c, c), s.Slice(2 * c, c), torch.get_num_threads());
        using (torch.no_grad())
        {
            double unbiased = layout.PerChannel / (layout.PerChannel - 1.0);
            using var varianceRate = (BatchNorm.Momentum * unbiased).ToScalar();
            running.Mean.mul_(KeptScalars.BatchNormKeep).add_(stats[0], alpha: KeptScalars.BatchNormRate);
            running.Variance.mul_(KeptScalars.BatchNormKeep).add_(stats[2], alpha: varianceRate);
        }
        ctx.save_for_backward([x, weight, bias, stats]);
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        ReleaseReturnedGradients();
        // Everything made here is freed on return, except the gradients handed to libtorch: the training step's
        // dispose scope would otherwise hold every layer's saved input and gradients until the step ends.
        using var scope = torch.NewDisposeScope();
        scope.Attach(gradOutput);
        var saved = ctx.get_saved_variables();
        var (x, weight, bias, stats) = (saved[0], saved[1], saved[2], saved[3]);
        var layout = Layout(x);
        var dy = gradOutput.contiguous();
        var dx = torch.empty_like(x);
        var dWeight = torch.empty_like(weight);
        var dBias = torch.empty_like(bias);
        var s = Floats(stats);
        int c = layout.Channels;
        BatchNormReluKernel.Backward(Floats(x), Floats(dy), Floats(dx), layout, Floats(weight), Floats(bias),
            s[..c], s.Slice(c, c), Floats(dWeight), Floats(dBias), torch.get_num_threads());
        returned = [dx.DetachFromDisposeScope(), dWeight.DetachFromDisposeScope(), dBias.DetachFromDisposeScope()];
        return [.. returned, null!];
    }

    // The gradients of the last backward on this thread. libtorch copies a returned tensor when the callback returns,
    // so the handles can be freed at the next call; freeing them on return is not possible from inside the callback.
    [ThreadStatic] static Tensor[]? returned;

    static void ReleaseReturnedGradients()
    {
        foreach (var tensor in returned ?? []) tensor.Dispose();
        returned = null;
    }

    static PlaneLayout Layout(Tensor x) =>
        new((int)x.shape[0], (int)x.shape[1], (int)(x.numel() / (x.shape[0] * x.shape[1])));
}
