using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Model;

/// <summary>
/// A learned group convolution after conversion (DESIGN.md §1.3): gather the kept inputs, BN → ReLU → grouped 1x1 conv,
/// then shuffle the output channels back to the interleaved order (channel o of group o mod G) the next layer expects.
/// </summary>
public sealed class CondensedConv : nn.Module<Tensor, Tensor>
{
    private readonly Tensor index;
    private readonly BatchNorm norm;
    private readonly Conv2d conv;

    public int Groups { get; }

    public CondensedConv(int inChannels, int outChannels, int groups, int condenseFactor) : base(nameof(CondensedConv))
    {
        Groups = groups;
        int gathered = inChannels * groups / condenseFactor;
        index = torch.zeros(gathered, dtype: ScalarType.Int64);
        norm = new BatchNorm(gathered);
        conv = nn.Conv2d(gathered, outChannels, 1, groups: groups, bias: false);
        RegisterComponents();
    }

    public Tensor Index => index;
    public BatchNorm Norm => norm;
    public Tensor Weight => conv.weight!;

    public override Tensor forward(Tensor input)
    {
        var x = norm.ForwardRelu(input.index_select(1, index));
        return ChannelShuffle(conv.forward(x), Groups);
    }

    /// <summary>
    /// The channel each output row of the grouped convolution becomes after <see cref="ChannelShuffle"/>: row
    /// g·(out/G) + k is channel k·G + g.
    /// </summary>
    public static Tensor ShuffledChannelOfRow(long outChannels, int groups, Device device) =>
        torch.arange(outChannels / groups, device: device).unsqueeze(0).mul(groups).add(torch.arange(groups, device: device).unsqueeze(1)).flatten();

    /// <summary>
    /// The grouped weight [out, in/C, 1, 1] and a bias that compute, before the shuffle, what the eval BatchNorm
    /// <c>x·scale + shift</c> of the shuffled channels computes after it: each row takes its channel's scale and shift.
    /// </summary>
    public static (Tensor Weight, Tensor Bias) FoldNormAfterShuffle(Tensor weight, Tensor scale, Tensor shift, int groups)
    {
        using var channelOfRow = ShuffledChannelOfRow(weight.shape[0], groups, weight.device);
        return (weight.mul(scale.index_select(0, channelOfRow).view(-1, 1, 1, 1)), shift.index_select(0, channelOfRow));
    }

    /// <summary>View channels as (G, C/G), transpose, flatten.</summary>
    public static Tensor ChannelShuffle(Tensor x, int groups)
    {
        long n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
        return x.view(n, groups, c / groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w);
    }
}

/// <summary>The converted classifier: gather the kept input features, then a Linear layer on them.</summary>
public sealed class CondensedLinear : nn.Module<Tensor, Tensor>
{
    private readonly Tensor index;
    private readonly Linear linear;

    public CondensedLinear(int inFeatures, int keptFeatures, int outFeatures) : base(nameof(CondensedLinear))
    {
        index = torch.zeros(keptFeatures, dtype: ScalarType.Int64);
        linear = nn.Linear(keptFeatures, outFeatures);
        InFeatures = inFeatures;
        RegisterComponents();
    }

    public int InFeatures { get; }
    public Tensor Index => index;
    public Linear Linear => linear;

    public override Tensor forward(Tensor input) => linear.forward(input.index_select(1, index));
}
