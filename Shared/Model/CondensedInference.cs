using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;
using static CondenseCluster.Shared.Model.TensorSpans;

namespace CondenseCluster.Shared.Model;

/// <summary>
/// A converted CondenseNet compiled for inference: the same features and logits as <see cref="CondenseNet.forward"/>,
/// computed with fewer passes over memory.
/// <list type="bullet">
/// <item>Each dense block's feature maps live in one preallocated channel-major buffer [C, N, H, W]: a layer writes
/// its new maps into the next channels instead of concatenating the whole input again, and the first c channels it
/// reads are one contiguous [c, N·H·W] matrix.</item>
/// <item>The learned 1x1 convolution is a matrix product on that matrix: either per group on the gathered kept
/// channels (one large product per group), or one dense product whose weight has zeros for the dropped inputs (no
/// gather). The next layer's BatchNorm is folded into its rows and bias, and the channel shuffle into the one copy
/// that brings its output to NCHW. On the CPU a fourth form does gather, BatchNorm → ReLU, product, bias, ReLU and
/// shuffle in one pass (<see cref="CondensedBottleneckKernel"/>), and BatchNorm → ReLU with a gather is one pass too.</item>
/// <item>The 3x3 group convolution runs as such, in NCHW or channels-last (the bottleneck's one copy writes either
/// layout), or as a dense convolution with a block-diagonal weight.</item>
/// </list>
/// Which form each layer uses is measured on first use per input shape, as cuDNN's benchmark mode does. The compiled
/// tensors are copies taken when compiled (the classifier is the model's own): compile again after changing the
/// model's weights.
/// </summary>
public sealed class CondensedInference : IDisposable
{
    /// <summary>The forms a dense layer's learned 1x1 convolution can run in; all give the same result.</summary>
    public enum Pointwise { GroupedConv, GroupedMatmul, DenseConv, FusedKernel }

    /// <summary>The forms a dense layer's 3x3 group convolution can run in; all give the same result.</summary>
    public enum Spatial { Grouped, GroupedChannelsLast, Dense }

    /// <summary>Forms every layer uses instead of measuring: for tests of each form, and for reproducible timings.</summary>
    public sealed record FixedForms(Pointwise Pointwise, Spatial Spatial);

    readonly CondenseNetConfig config;
    readonly Tensor initWeight;
    readonly DenseLayerKernels[][] blocks;
    readonly Norm last;
    readonly nn.Module<Tensor, Tensor> classifier;

    CondensedInference(CondenseNetConfig config, Tensor initWeight, DenseLayerKernels[][] blocks, Norm last, nn.Module<Tensor, Tensor> classifier) =>
        (this.config, this.initWeight, this.blocks, this.last, this.classifier) = (config, initWeight, blocks, last, classifier);

    /// <summary>
    /// Compiles a converted model (<see cref="Conversion.Convert"/>), with its weights and BatchNorm statistics as they
    /// are now; <paramref name="fixedForms"/> skips the measuring.
    /// </summary>
    public static CondensedInference Compile(CondenseNet converted, FixedForms? fixedForms = null)
    {
        if (converted.Form != ModelForm.Converted)
            throw new ArgumentException("only a converted model can be compiled for inference; convert the trained model first");
        var config = converted.Config;
        using var _ = torch.no_grad();
        var state = converted.state_dict();
        var blocks = new DenseLayerKernels[config.Stages.Length][];
        int channels = 2 * config.Growth[0];
        for (int b = 0; b < config.Stages.Length; b++)
        {
            blocks[b] = new DenseLayerKernels[config.Stages[b]];
            for (int l = 0; l < config.Stages[b]; l++, channels += config.Growth[b])
            {
                string prefix = $"features.denseblock_{b + 1}.denselayer_{l + 1}.";
                blocks[b][l] = DenseLayerKernels.Compile(config, channels, key => state[prefix + key], fixedForms);
            }
        }
        return new CondensedInference(config, state["features.init_conv.weight"].detach().clone(), blocks,
            Norm.Of(key => state["features.norm_last." + key]), converted.Classifier);
    }

    /// <summary>Pooled features [N, final channels], equal to the converted model's <see cref="CondenseNet.Features"/>.</summary>
    public Tensor Features(Tensor input)
    {
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        long n = input.shape[0];
        var maps = nn.functional.conv2d(input, initWeight, strides: [config.InitStride, config.InitStride], padding: [1, 1]).transpose(0, 1);
        for (int b = 0; b < blocks.Length; b++)
        {
            if (b > 0) maps = nn.functional.avg_pool2d(maps, 2, 2); // per plane, so channel-major maps pool as they are
            long channels = maps.shape[0], total = channels + blocks[b].Length * (long)config.Growth[b];
            var block = torch.empty([total, n, maps.shape[2], maps.shape[3]], dtype: maps.dtype, device: maps.device);
            block.narrow(0, 0, channels).copy_(maps);
            foreach (var layer in blocks[b])
            {
                var grown = layer.Forward(block, channels);
                block.narrow(0, channels, grown.shape[1]).copy_(grown.transpose(0, 1));
                channels += grown.shape[1];
            }
            maps = block;
        }
        var normalized = last.Apply(maps);
        return nn.functional.avg_pool2d(normalized, config.FinalMapSize).view(maps.shape[0], n).t().contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>Logits: <see cref="Features"/> through the converted classifier.</summary>
    public Tensor Forward(Tensor input)
    {
        using var _ = torch.no_grad();
        using var features = Features(input);
        return classifier.forward(features);
    }

    /// <summary>The forms each dense layer chose per input shape so far, e.g. "N=64 32x32: 1x1 GroupedConv, 3x3 dense".</summary>
    public IReadOnlyList<string> ChosenForms() =>
        blocks.SelectMany((layers, b) => layers.SelectMany((layer, l) => layer.ChosenForms.Select(form => $"block {b + 1} layer {l + 1}, {form}"))).ToArray();

    public void Dispose()
    {
        initWeight.Dispose();
        foreach (var layer in blocks.SelectMany(b => b)) layer.Dispose();
        last.Dispose();
    }

    /// <summary>Eval-mode BatchNorm → ReLU as x·Scale + Shift per channel, on channel-major maps [C, …].</summary>
    sealed record Norm(Tensor Scale, Tensor Shift) : IDisposable
    {
        public static Norm Of(Func<string, Tensor> state)
        {
            var (scale, shift) = BatchNorm.EvalScaleShift(state);
            return new(scale, shift);
        }

        /// <summary>
        /// BN → ReLU of the channels <paramref name="rows"/> of <paramref name="maps"/> [C, …], gathered in that order,
        /// or of all C when null; this norm has one channel per result row.
        /// </summary>
        public Tensor Apply(Tensor maps, Tensor? rows = null)
        {
            long count = rows?.shape[0] ?? maps.shape[0];
            if (FitsCpuKernel(maps))
            {
                var result = torch.empty([count, .. maps.shape[1..]], dtype: ScalarType.Float32);
                int rowLength = (int)(maps.numel() / maps.shape[0]);
                using var all = rows is null ? torch.arange(count) : null;
                BatchNormReluKernel.GatherEval(Floats(maps), rowLength, Longs(rows ?? all!),
                    Floats(Scale), Floats(Shift), Floats(result), torch.get_num_threads());
                return result;
            }
            var selected = rows is null ? maps : maps.index_select(0, rows);
            var perRow = selected.reshape(count, -1);
            return torch.addcmul(Shift.unsqueeze(1), perRow, Scale.unsqueeze(1), 1).relu_().view(selected.shape);
        }

        public void Dispose()
        {
            Scale.Dispose();
            Shift.Dispose();
        }
    }

    /// <summary>One dense layer's compiled tensors and the forms it runs in.</summary>
    sealed class DenseLayerKernels : IDisposable
    {
        readonly Tensor index;                 // the kept input channels, group after group
        readonly Norm gatheredNorm, inputNorm; // conv_1's BatchNorm on the gathered channels / on all c input channels
        readonly Tensor groupedWeight;         // [out, kept/G, 1, 1] as converted, conv_2's BatchNorm folded into its rows
        readonly Tensor groupedBias;           // [out]: conv_2's BatchNorm shift; row g·(out/G) + k feeds channel k·G + g
        readonly Tensor denseWeight, denseBias; // [out, c, 1, 1] with zeros for dropped inputs, rows in channel (shuffled) order
        readonly Tensor grouped3, grouped3ChannelsLast, dense3; // the 3x3 weight as a group convolution (NCHW, NHWC) and as a block-diagonal dense one
        readonly int groups, groups3;
        readonly Dictionary<(long N, long H, long W), (Pointwise Pointwise, Spatial Spatial)> forms = new();
        readonly FixedForms? fixedForms;

        DenseLayerKernels(Tensor index, Norm gatheredNorm, Norm inputNorm, Tensor groupedWeight, Tensor groupedBias, Tensor denseWeight,
            Tensor denseBias, Tensor grouped3, Tensor dense3, int groups, int groups3, FixedForms? fixedForms)
        {
            this.fixedForms = fixedForms;
            (this.index, this.gatheredNorm, this.inputNorm, this.groupedWeight, this.groupedBias) = (index, gatheredNorm, inputNorm, groupedWeight, groupedBias);
            (this.denseWeight, this.denseBias, this.grouped3, this.dense3, this.groups, this.groups3) = (denseWeight, denseBias, grouped3, dense3, groups, groups3);
            grouped3ChannelsLast = BnReluConv.ChannelsLast(grouped3);
        }

        public static DenseLayerKernels Compile(CondenseNetConfig config, int inChannels, Func<string, Tensor> state, FixedForms? fixedForms)
        {
            int groups = config.Group1x1;
            var index = state("conv_1.index").detach().clone();
            var gatheredNorm = Norm.Of(key => state("conv_1.norm." + key));
            var (scale2, shift2) = Norm.Of(key => state("conv_2.norm." + key));

            // Row g·(out/G) + k of the grouped weight feeds channel k·G + g after the shuffle, whose BatchNorm it absorbs.
            var weight = state("conv_1.conv.weight");
            long outChannels = weight.shape[0], outPerGroup = outChannels / groups, perGroup = weight.shape[1];
            using var channelOfRow = CondensedConv.ShuffledChannelOfRow(outChannels, groups, weight.device);
            var (groupedWeight, groupedBias) = CondensedConv.FoldNormAfterShuffle(weight, scale2, shift2, groups);

            // The dense form: each row moved to its channel, its group's kept columns scattered back to their inputs.
            // Inputs no group keeps get scale and shift 0: they are read as zeros, which their zero weights ignore.
            var denseWeight = torch.zeros(outChannels, inChannels, 1, 1, dtype: weight.dtype, device: weight.device);
            for (int g = 0; g < groups; g++)
            {
                using var columns = index.narrow(0, g * perGroup, perGroup);
                using var rows = channelOfRow.narrow(0, g * outPerGroup, outPerGroup);
                using var groupRows = groupedWeight.narrow(0, g * outPerGroup, outPerGroup).view(outPerGroup, perGroup);
                using var scattered = torch.zeros(outPerGroup, inChannels, dtype: weight.dtype, device: weight.device).index_copy_(1, columns, groupRows);
                denseWeight.view(outChannels, inChannels).index_copy_(0, rows, scattered);
            }
            var inputNorm = new Norm(Scatter(index, gatheredNorm.Scale, inChannels), Scatter(index, gatheredNorm.Shift, inChannels));

            var grouped3 = state("conv_2.conv.weight").detach().clone();
            int groups3 = config.Group3x3;
            long outs = grouped3.shape[0], insPerGroup = grouped3.shape[1], outsPerGroup = outs / groups3;
            var dense3 = torch.zeros([outs, insPerGroup * groups3, 3, 3], dtype: grouped3.dtype, device: grouped3.device);
            for (int g = 0; g < groups3; g++)
                dense3.narrow(0, g * outsPerGroup, outsPerGroup).narrow(1, g * insPerGroup, insPerGroup)
                    .copy_(grouped3.narrow(0, g * outsPerGroup, outsPerGroup));
            scale2.Dispose();
            return new DenseLayerKernels(index, gatheredNorm, inputNorm, groupedWeight, groupedBias, denseWeight, shift2, grouped3, dense3, groups, groups3, fixedForms);
        }

        /// <summary>A per-channel vector over all inputs: the gathered values at their channels, 0 elsewhere.</summary>
        static Tensor Scatter(Tensor index, Tensor gathered, int channels) =>
            torch.zeros(channels, dtype: gathered.dtype, device: gathered.device).index_copy_(0, index, gathered);

        /// <summary>The layer's new feature maps [N, growth, H, W] from the first <paramref name="channels"/> of <paramref name="block"/> [C, N, H, W].</summary>
        public Tensor Forward(Tensor block, long channels)
        {
            var (pointwise, spatial) = Forms(block, channels);
            return Conv3x3(Bottleneck(block, channels, pointwise, spatial == Spatial.GroupedChannelsLast), spatial);
        }

        /// <summary>conv_1, then conv_2's BN → ReLU: [N, out, H, W] in the shuffled channel order, NCHW or channels-last.</summary>
        Tensor Bottleneck(Tensor block, long channels, Pointwise form, bool channelsLast)
        {
            long n = block.shape[1], h = block.shape[2], w = block.shape[3];
            if (form == Pointwise.DenseConv)
            {
                // A 1x1 convolution sees channel-major maps [c, N, H, W] as one image [1, c, N·H, W].
                var input = inputNorm.Apply(block.narrow(0, 0, channels)).view(1, channels, n * h, w);
                var product = nn.functional.conv2d(input, denseWeight, denseBias).relu_(); // channels already shuffled
                return ToImage(product, 1, n, h, w, channelsLast);
            }
            if (form == Pointwise.FusedKernel)
            {
                if (!FitsCpuKernel(block)) throw new ArgumentException($"the 1x1 form {form} runs on contiguous float32 CPU tensors only, not {block.dtype} on {block.device}");
                long outChannels = groupedWeight.shape[0], perGroup = groupedWeight.shape[1];
                var image = torch.empty([n, outChannels, h, w], dtype: ScalarType.Float32);
                CondensedBottleneckKernel.Run(Floats(block), Longs(index), Floats(gatheredNorm.Scale), Floats(gatheredNorm.Shift),
                    Floats(groupedWeight), Floats(groupedBias), Floats(image),
                    new BottleneckShape((int)n, (int)(h * w), groups, (int)perGroup, (int)(outChannels / groups)), torch.get_num_threads());
                return channelsLast ? BnReluConv.ChannelsLast(image) : image;
            }
            var gathered = gatheredNorm.Apply(block, index);
            var grouped = form == Pointwise.GroupedConv
                ? nn.functional.conv2d(gathered.view(1, -1, n * h, w), groupedWeight, groupedBias, groups: groups)
                : torch.bmm(groupedWeight.view(groups, -1, groupedWeight.shape[1]), gathered.view(groups, -1, n * h * w)).add_(groupedBias.view(groups, -1, 1));
            return ToImage(grouped.relu_(), groups, n, h, w, channelsLast);
        }

        /// <summary>
        /// Channel-major rows [G, out/G, N, H·W], row g·out/G + k being channel k·G + g (the shuffle), as an image
        /// [N, out, H, W] with NCHW or NHWC strides, in one copy.
        /// </summary>
        static Tensor ToImage(Tensor rows, long groups, long n, long h, long w, bool channelsLast)
        {
            var split = rows.view(groups, -1, n, h * w);
            return channelsLast
                ? split.permute(2, 3, 1, 0).contiguous().view(n, h, w, -1).permute(0, 3, 1, 2)
                : split.permute(2, 1, 0, 3).contiguous().view(n, -1, h, w);
        }

        Tensor Conv3x3(Tensor x, Spatial form) => form switch
        {
            Spatial.Dense => nn.functional.conv2d(x, dense3, padding: [1, 1]),
            Spatial.GroupedChannelsLast => nn.functional.conv2d(x, grouped3ChannelsLast, padding: [1, 1], groups: groups3),
            _ => nn.functional.conv2d(x, grouped3, padding: [1, 1], groups: groups3),
        };

        /// <summary>The fastest forms for this input shape, measured once per shape.</summary>
        (Pointwise, Spatial) Forms(Tensor block, long channels)
        {
            if (fixedForms is not null) return (fixedForms.Pointwise, fixedForms.Spatial);
            var shape = (block.shape[1], block.shape[2], block.shape[3]);
            if (forms.TryGetValue(shape, out var chosen)) return chosen;
            var candidates = Enum.GetValues<Pointwise>().Where(form => form != Pointwise.FusedKernel || FitsCpuKernel(block)).ToArray();
            var pointwise = Fastest(candidates, form => Bottleneck(block, channels, form, channelsLast: false));
            // Each 3x3 form with the bottleneck layout it reads, since the layout decides the bottleneck's last copy.
            chosen = (pointwise, Fastest(Enum.GetValues<Spatial>(),
                form => Conv3x3(Bottleneck(block, channels, pointwise, form == Spatial.GroupedChannelsLast), form)));
            forms[shape] = chosen;
            return chosen;
        }

        /// <summary>The candidate whose run is fastest, best of three runs each after one to warm up.</summary>
        static T Fastest<T>(T[] candidates, Func<T, Tensor> run)
        {
            double Best(T candidate) => Enumerable.Range(0, 4).Select(_ =>
            {
                using var scope = torch.NewDisposeScope(); // frees each run's intermediates before the next
                var clock = Stopwatch.StartNew();
                var result = run(candidate);
                if (result.device_type == DeviceType.CUDA) torch.cuda.synchronize();
                return clock.Elapsed.TotalMilliseconds;
            }).Skip(1).Min();
            return candidates.MinBy(Best)!;
        }

        public IEnumerable<string> ChosenForms => forms.Select(f =>
            $"N={f.Key.N} {f.Key.H}x{f.Key.W}: 1x1 {f.Value.Pointwise}, 3x3 {f.Value.Spatial}");

        public void Dispose()
        {
            foreach (var t in new[] { index, groupedWeight, groupedBias, denseWeight, denseBias, grouped3, grouped3ChannelsLast, dense3 }) t.Dispose();
            gatheredNorm.Dispose();
            inputNorm.Dispose();
        }
    }
}
