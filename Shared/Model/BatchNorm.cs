using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Model;

/// <summary>
/// BatchNorm2d (momentum 0.1, eps 1e-5) with PyTorch's parameter and buffer names. TorchSharp's own BatchNorm passes a
/// temporary <see cref="Scalar"/> to native code when it counts batches; under GC pressure (data loader threads) the
/// finalizer can free that scalar during the call and the native add reads garbage. This one passes kept scalars
/// (<see cref="KeptScalars"/>), the add's alpha included.
/// </summary>
public sealed class BatchNorm : nn.Module<Tensor, Tensor>
{
    /// <summary>PyTorch's BatchNorm2d defaults, which the official model uses.</summary>
    public const double Momentum = 0.1, Eps = 1e-5;

    private readonly Parameter weight;
    private readonly Parameter bias;
    private readonly Tensor running_mean;
    private readonly Tensor running_var;
    private readonly Tensor num_batches_tracked;

    public BatchNorm(long features) : base(nameof(BatchNorm))
    {
        weight = new Parameter(torch.ones(features));
        bias = new Parameter(torch.zeros(features));
        running_mean = torch.zeros(features);
        running_var = torch.ones(features);
        num_batches_tracked = torch.tensor(0L);
        RegisterComponents();
    }

    /// <summary>
    /// Eval-mode BatchNorm as <c>x·Scale + Shift</c> per channel, from a state dict's <c>weight</c>, <c>bias</c> and
    /// running statistics (<paramref name="state"/> maps those keys to tensors).
    /// </summary>
    public static (Tensor Scale, Tensor Shift) EvalScaleShift(Func<string, Tensor> state)
    {
        using var scope = torch.NewDisposeScope();
        var scale = state("weight").div(state("running_var").add(Eps).sqrt());
        var shift = state("bias").sub(state("running_mean").mul(scale));
        return (scale.MoveToOuterDisposeScope(), shift.MoveToOuterDisposeScope());
    }

    public Parameter Weight => weight;
    public Parameter Bias => bias;
    public Tensor RunningMean => running_mean;
    public Tensor RunningVar => running_var;

    public override Tensor forward(Tensor input)
    {
        CountBatch();
        return nn.functional.batch_norm(input, running_mean, running_var, weight, bias, training, Momentum, Eps);
    }

    /// <summary>
    /// BN → ReLU. Training on CPU runs both as one kernel (<see cref="BatchNormReluFunction"/>); otherwise libtorch's BN
    /// with the ReLU in place, as in the official code (<c>ReLU(inplace=True)</c>): BN's output is a fresh tensor and
    /// its backward keeps only its input, so no second tensor of the same size is written.
    /// </summary>
    public Tensor ForwardRelu(Tensor input)
    {
        if (!training || !BatchNormReluFunction.Supports(input)) return forward(input).relu_();
        CountBatch();
        return BatchNormReluFunction.Apply(input, weight, bias, new(running_mean, running_var));
    }

    void CountBatch()
    {
        if (!training) return;
        using var _ = torch.no_grad();
        num_batches_tracked.add_(KeptScalars.One, KeptScalars.One);
    }
}
