using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Model;

/// <summary>
/// Learned group convolution, training form (DESIGN.md §1.1): BN → ReLU → (dropout) → 1x1 conv whose weight is
/// multiplied by <c>_mask</c> on every forward. Output channel o belongs to group o mod G. The mask, the number of
/// columns each group has dropped (<c>_count</c>) and the condensing stage (<c>_stage</c>) are saved with the model.
/// </summary>
public sealed class LearnedGroupConv : nn.Module<Tensor, Tensor>
{
    // Scalars passed to native code are kept alive here: a temporary one can be finalized during the call.
    static readonly Scalar LassoFloor = 1e-6.ToScalar();

    // Field names are the state-dict keys of the official code.
    private readonly BatchNorm norm;
    private readonly Conv2d conv;
    private readonly Tensor _mask;
    private readonly Tensor _count;
    private readonly Tensor _stage;

    /// <summary>State-dict names of the mask and stage buffers, for readers of a saved state (<see cref="LayerMasks"/>).</summary>
    internal const string MaskEntry = nameof(_mask), StageEntry = nameof(_stage);

    public int InChannels { get; }
    public int OutChannels { get; }
    public int Groups { get; }
    public int CondenseFactor { get; }
    public double DropoutRate { get; }

    public LearnedGroupConv(int inChannels, int outChannels, int groups, int condenseFactor, double dropoutRate)
        : base(nameof(LearnedGroupConv))
    {
        (InChannels, OutChannels, Groups, CondenseFactor, DropoutRate) = (inChannels, outChannels, groups, condenseFactor, dropoutRate);
        norm = new BatchNorm(inChannels);
        conv = nn.Conv2d(inChannels, outChannels, 1, bias: false);
        _mask = torch.ones(outChannels, inChannels, 1, 1);
        _count = torch.zeros(1);
        _stage = torch.zeros(1);
        RegisterComponents();
    }

    public BatchNorm Norm => norm;
    public Tensor Weight => conv.weight!;
    public Tensor Mask => _mask;

    /// <summary>The condensing stage reached so far (0 … C-1).</summary>
    public int Stage => (int)_stage.item<float>();

    public override Tensor forward(Tensor input)
    {
        var x = norm.ForwardRelu(input);
        if (DropoutRate > 0) x = nn.functional.dropout(x, DropoutRate, training);
        return nn.functional.conv2d(x, conv.weight! * _mask);
    }

    /// <summary>Per-group L1 importance [G, in] of the masked weights; what workers average at a condensing boundary.</summary>
    public float[,] Importance() =>
        DropCriterion.Importance(Flat(conv.weight!), Flat(_mask), OutChannels, InChannels, Groups);

    /// <summary>Kept input columns per group [G, in], read from the mask.</summary>
    public bool[,] KeptColumns() => DropCriterion.KeptColumns(Flat(_mask), InChannels, Groups);

    /// <summary>Installs a decided mask (<see cref="ModelCondensing"/>) and the stage it belongs to.</summary>
    public void ApplyKeptColumns(bool[,] kept, int stage)
    {
        if (kept.GetLength(0) != Groups || kept.GetLength(1) != InChannels)
            throw new ArgumentException($"mask is [{kept.GetLength(0)}, {kept.GetLength(1)}] but this layer has G={Groups}, {InChannels} inputs");
        int dropped = Enumerable.Range(0, InChannels).Count(j => !kept[0, j]);
        using var _ = torch.no_grad();
        using var mask = torch.tensor(DropCriterion.ExpandMask(kept, OutChannels), OutChannels, InChannels, 1, 1);
        using var count = ((float)dropped).ToScalar();
        using var reached = ((float)stage).ToScalar();
        _mask.copy_(mask);
        _count.fill_(count);
        _stage.fill_(reached);
    }

    /// <summary>Group lasso Σ_g Σ_j sqrt(max(Σ_{o≡g} (W·mask)², 1e-6)); zero once the stage reaches G-1.</summary>
    public Tensor LassoLoss()
    {
        if (Stage >= Groups - 1) return torch.zeros(1, device: _mask.device).sum();
        var masked = conv.weight! * _mask;
        return (masked * masked).view(OutChannels / Groups, Groups, InChannels).sum(0L).clamp_min(LassoFloor).sqrt().sum();
    }

    static float[] Flat(Tensor t)
    {
        using var cpu = t.detach().cpu().contiguous();
        return cpu.data<float>().ToArray();
    }
}
