using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Model;

/// <summary>Training form (learned group convolutions with masks) or converted form (index + grouped conv + shuffle).</summary>
public enum ModelForm { Training, Converted }

/// <summary>
/// CondenseNet (DESIGN.md §1.2), built with the official module tree so that state-dict keys match the PyTorch code:
/// <c>features.{init_conv, denseblock_b.denselayer_l.{conv_1, conv_2}, transition_b, norm_last}</c> and <c>classifier</c>.
/// </summary>
public sealed class CondenseNet : nn.Module<Tensor, Tensor>
{
    private readonly Sequential features;
    private readonly nn.Module<Tensor, Tensor> classifier;

    public CondenseNetConfig Config { get; }
    public ModelForm Form { get; }

    public CondenseNet(CondenseNetConfig config, ModelForm form = ModelForm.Training) : base(nameof(CondenseNet))
    {
        config.Validate();
        (Config, Form) = (config, form);

        var layers = new List<(string, nn.Module<Tensor, Tensor>)>
        {
            ("init_conv", nn.Conv2d(config.InChannels, 2 * config.Growth[0], 3, stride: config.InitStride, padding: 1, bias: false)),
        };
        foreach (var block in config.DenseLayers().GroupBy(d => d.Block))
        {
            layers.Add(($"denseblock_{block.Key + 1}",
                nn.Sequential(block.Select(d => ($"denselayer_{d.Layer + 1}", (nn.Module<Tensor, Tensor>)new DenseLayer(d.InChannels, d.Growth, config, form))))));
            if (block.Key < config.Stages.Length - 1)
                layers.Add(($"transition_{block.Key + 1}", nn.AvgPool2d(2, 2)));
        }
        int channels = config.FinalChannels;
        layers.Add(("norm_last", new BatchNorm(channels)));
        layers.Add(("relu_last", nn.ReLU(inplace: true)));
        layers.Add(("pool_last", nn.AvgPool2d(config.FinalMapSize)));
        features = nn.Sequential(layers);
        classifier = form == ModelForm.Training
            ? nn.Linear(channels, config.NumClasses)
            : new CondensedLinear(channels, channels / 2, config.NumClasses);
        RegisterComponents();
        InitializeWeights();
    }

    /// <summary>Pooled features [N, final channels], the classifier's input.</summary>
    public Tensor Features(Tensor input) => features.forward(input).flatten(1);

    public override Tensor forward(Tensor input) => classifier.forward(Features(input));

    public nn.Module<Tensor, Tensor> Classifier => classifier;

    /// <summary>
    /// The forward pass as a chain of steps (the stem, each dense layer, each transition, then norm-pool-classifier),
    /// with how many parameter values each step owns. Steps own consecutive runs of <see cref="nn.Module.parameters"/>,
    /// so a training loop can run backward one step at a time and know which gradients are final after each.
    /// </summary>
    public IReadOnlyList<(Func<Tensor, Tensor> Forward, long ParameterCount)> Chain()
    {
        var modules = features.children().Cast<nn.Module<Tensor, Tensor>>()
            .SelectMany(m => m is Sequential block ? block.children().Cast<nn.Module<Tensor, Tensor>>() : [m]).ToList();
        int head = modules.FindIndex(m => m is BatchNorm); // norm_last: from here on, one step with the classifier
        long Count(IEnumerable<nn.Module> ms) => ms.SelectMany(m => m.parameters()).Sum(p => p.numel());
        var chain = modules.Take(head).Select(m => ((Func<Tensor, Tensor>)m.forward, Count([m]))).ToList();
        var tail = modules.Skip(head).ToArray();
        chain.Add((x => classifier.forward(tail.Aggregate(x, (h, m) => m.forward(h)).flatten(1)), Count([.. tail, classifier])));
        return chain;
    }

    /// <summary>Every learned group convolution with its state-dict prefix, in network order (training form).</summary>
    public IEnumerable<(string Name, LearnedGroupConv Layer)> LearnedLayers => LayersOf<LearnedGroupConv>();

    /// <summary>Every converted learned layer with its state-dict prefix, in network order (converted form).</summary>
    public IEnumerable<(string Name, CondensedConv Layer)> CondensedLayers => LayersOf<CondensedConv>();

    /// <summary>Summed group-lasso term of all learned layers (DESIGN.md §1.1).</summary>
    public Tensor GroupLasso()
    {
        var terms = LearnedLayers.Select(l => l.Layer.LassoLoss()).ToArray();
        return terms.Length == 0 ? torch.zeros(1).sum() : torch.stack(terms).sum();
    }

    IEnumerable<(string, T)> LayersOf<T>() where T : nn.Module =>
        named_modules().Where(m => m.module is T).Select(m => (m.name, (T)m.module));

    // Convolutions ~ N(0, sqrt(2 / (kh·kw·out))); BatchNorm 1 and 0; Linear bias 0 (the official initialisation).
    void InitializeWeights()
    {
        using var _ = torch.no_grad();
        foreach (var (_, module) in named_modules())
        {
            switch (module)
            {
                case Conv2d conv:
                    var w = conv.weight!;
                    nn.init.normal_(w, 0, Math.Sqrt(2.0 / (w.shape[2] * w.shape[3] * w.shape[0])));
                    break;
                case Linear linear when linear.bias is not null:
                    nn.init.zeros_(linear.bias);
                    break;
            }
        }
    }
}

/// <summary>One dense layer: learned group conv 1x1 (in → 4k) then BN-ReLU-3x3 group conv (4k → k), output appended to the input.</summary>
public sealed class DenseLayer : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> conv_1;
    private readonly BnReluConv conv_2;

    public DenseLayer(int inChannels, int growth, CondenseNetConfig config, ModelForm form) : base(nameof(DenseLayer))
    {
        int bottleneck = config.Bottleneck * growth;
        conv_1 = form == ModelForm.Training
            ? new LearnedGroupConv(inChannels, bottleneck, config.Group1x1, config.CondenseFactor, config.DropoutRate)
            : new CondensedConv(inChannels, bottleneck, config.Group1x1, config.CondenseFactor);
        conv_2 = new BnReluConv(bottleneck, growth, kernelSize: 3, padding: 1, groups: config.Group3x3);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input) => torch.cat([input, conv_2.forward(conv_1.forward(input))], 1);
}

/// <summary>
/// BN → ReLU → conv (the official <c>Conv</c> block). On CPU a group convolution runs channels-last (NHWC): libtorch's
/// oneDNN group convolution is 2–3x faster that way for CondenseNet's thin groups (forward + backward of 64 x 32→8
/// channels, G=4, 32x32: 22.7 ms NCHW, 9.1 ms NHWC), and the bottleneck's few channels are cheap to reorder. BN stays
/// in NCHW: libtorch's channels-last batch norm is about 40x less precise. The result equals the NCHW block up to
/// rounding, and is returned in NCHW.
/// </summary>
public sealed class BnReluConv : nn.Module<Tensor, Tensor>
{
    private readonly BatchNorm norm;
    private readonly Conv2d conv;

    public BnReluConv(int inChannels, int outChannels, int kernelSize, int padding, int groups) : base(nameof(BnReluConv))
    {
        norm = new BatchNorm(inChannels);
        conv = nn.Conv2d(inChannels, outChannels, kernelSize, padding: padding, groups: groups, bias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        var x = norm.ForwardRelu(input);
        if (x.device_type != DeviceType.CPU || conv.groups == 1) return conv.forward(x);
        return nn.functional.conv2d(ChannelsLast(x), ChannelsLast(conv.weight!), padding: conv.padding, groups: conv.groups).contiguous();
    }

    /// <summary>The same tensor with NHWC strides (TorchSharp has no memory_format argument; libtorch reads the strides).</summary>
    internal static Tensor ChannelsLast(Tensor t) => t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
}
