using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Training;

/// <summary>What one micro-batch contributed: summed cross-entropy, correct predictions, samples.</summary>
public readonly record struct MicroBatchResult(double LossSum, int Correct, int Samples);

/// <summary>
/// One model replica and its optimizer, driven as the distributed step needs it (DESIGN.md §2): accumulate gradients
/// of this replica's micro-batches into one flat buffer → (reduce across replicas) → divide by M and apply the same
/// update everywhere. On one node the reduce is a local sum, i.e. nothing to do.
/// </summary>
public sealed class TrainingEngine : IDisposable
{
    readonly TrainingOptions options;
    readonly Scalar lasso;  // kept alive for the native call (a temporary Scalar can be finalized during one)
    int checkedStage = -1;  // the schedule's stage at the last Condense call: layers can fall behind only when it changes, so are read only then
    readonly IReadOnlyList<(Func<Tensor, Tensor> Forward, long ParameterCount)> chain; // the model's, built once

    public TrainingEngine(TrainingOptions options, Device device)
    {
        options.Validate();
        this.options = options;
        lasso = options.Lasso.ToScalar();
        Device = device;
        torch.manual_seed(options.Seed);
        Model = new CondenseNet(options.Model).to(device);
        Model.train();
        var parameters = Model.parameters().ToArray();
        Optimizer = new NesterovSgd(parameters, options.Momentum, options.WeightDecay);
        Gradients = new GradientBuffer(parameters, device);
        chain = Model.Chain();
        if (options.EmaDecay > 0) Average = new WeightAverage(Model, options.EmaDecay, device);
    }

    public Device Device { get; }
    public CondenseNet Model { get; }
    public NesterovSgd Optimizer { get; }
    public GradientBuffer Gradients { get; }
    /// <summary>The moving average of the weights (--ema), or null.</summary>
    public WeightAverage? Average { get; }

    /// <summary>Starts a step: clears the accumulated gradients.</summary>
    public void BeginStep() => Gradients.Zero();

    /// <summary>
    /// Forward and backward of one micro-batch (BN in training mode), adding its gradient to the buffer. With
    /// <paramref name="gradientsFinalFrom"/>, backward runs one chain step of the model at a time (the same sums, in the
    /// same order) and reports after each step from which flat offset on the buffer's gradients are final. The loss is
    /// multiplied by <paramref name="lossWeight"/> (<see cref="MicroBatchPlan.LossWeight"/>) before backward.
    /// </summary>
    public MicroBatchResult Accumulate(Tensor images, Tensor labels, long step, int microBatch, Action<long>? gradientsFinalFrom = null, double lossWeight = 1)
    {
        using var scope = torch.NewDisposeScope();
        Model.train();
        // Dropout masks depend on (seed, step, micro-batch), not on which replica computes the micro-batch.
        if (options.Model.DropoutRate > 0) torch.manual_seed(SampleOrder.Mix(options.Seed, (int)step, microBatch));
        var x = images.to(Device);
        var y = labels.to(Device);
        if (gradientsFinalFrom is null)
        {
            var logits = Model.forward(x);
            return Result(logits, LossBackward(logits, y, lossWeight), y);
        }

        // Forward step by step, each step's input a leaf of its own, so backward can be run one step at a time.
        var outputs = new Tensor[chain.Count];
        var inputs = new Tensor[chain.Count];
        var h = x;
        for (int i = 0; i < chain.Count; i++)
        {
            inputs[i] = i == 0 ? h : h.detach().requires_grad_(true);
            outputs[i] = h = chain[i].Forward(inputs[i]);
        }
        var crossEntropy = LossBackward(outputs[^1], y, lossWeight); // the last step's gradients
        long final = Gradients.Length;
        for (int i = chain.Count - 1; i >= 0; i--)
        {
            if (i < chain.Count - 1)
            {
                using var gradient = inputs[i + 1].grad!;
                outputs[i].backward([gradient]);
                // Freed now, as one backward pass frees each step's gradient once used, not at the end of the scope.
                inputs[i + 1].Dispose();
                outputs[i].Dispose();
            }
            final -= chain[i].ParameterCount;
            gradientsFinalFrom(final);
        }
        return Result(outputs[^1], crossEntropy, y);
    }

    /// <summary>Cross-entropy (label-smoothed with --label-smoothing) plus the group lasso, times <paramref name="weight"/>, backward from it; returns the cross-entropy.</summary>
    Tensor LossBackward(Tensor logits, Tensor labels, double weight)
    {
        var crossEntropy = nn.functional.cross_entropy(logits, labels, label_smoothing: options.LabelSmoothing);
        var loss = options.Lasso > 0 ? crossEntropy + Model.GroupLasso().mul(lasso) : crossEntropy;
        (weight == 1 ? loss : loss.mul(weight)).backward(); // no multiplication by 1: equal micro-batches keep their exact bits
        return crossEntropy;
    }

    static MicroBatchResult Result(Tensor logits, Tensor crossEntropy, Tensor labels)
    {
        int correct = (int)logits.argmax(1).eq(labels).sum().item<long>();
        return new(crossEntropy.item<float>() * labels.shape[0], correct, (int)labels.shape[0]);
    }

    /// <summary>
    /// Accumulates the given micro-batches of <paramref name="plan"/>'s step, taken in order from
    /// <paramref name="prefetcher"/>, each weighted by its size; returns their summed result and the milliseconds spent
    /// waiting for the loader. The last micro-batch's backward reports to <paramref name="gradientsFinalFrom"/> (see <see cref="Accumulate"/>).
    /// </summary>
    public (MicroBatchResult Total, double DataWaitMs) AccumulateAll(long step, MicroBatchPlan plan, IReadOnlyList<int> microBatches, BatchPrefetcher prefetcher,
        IImageDataset data, Action<long>? gradientsFinalFrom = null)
    {
        double loss = 0, dataWait = 0;
        int correct = 0, samples = 0;
        foreach (int m in microBatches)
        {
            var wait = System.Diagnostics.Stopwatch.StartNew();
            var batch = prefetcher.Next();
            dataWait += wait.Elapsed.TotalMilliseconds;
            using var scope = torch.NewDisposeScope();
            var (x, y) = BatchTensors.From(batch, data, Device);
            var result = Accumulate(x, y, step, m, m == microBatches[^1] ? gradientsFinalFrom : null, plan.LossWeight(m));
            (loss, correct, samples) = (loss + result.LossSum, correct + result.Correct, samples + result.Samples);
        }
        return (new MicroBatchResult(loss, correct, samples), dataWait);
    }

    /// <summary>Where each chain step's parameters end in the gradient buffer (<see cref="CondenseNet.Chain"/>).</summary>
    public long[] ChainStepEnds()
    {
        long end = 0;
        var ends = chain.Select(s => end += s.ParameterCount).ToArray();
        if (end != Gradients.Length) throw new InvalidOperationException($"the model's chain steps own {end} parameter values, its gradient buffer {Gradients.Length}");
        return ends;
    }

    /// <summary>Every parameter's place in the gradient buffer, with the kept columns of each learned layer's weight.</summary>
    public ParameterLayout[] GradientLayout()
    {
        var masked = Model.LearnedLayers.ToDictionary(l => l.Layer.Weight.Handle, l => l.Layer);
        return Model.parameters().Select(p => masked.TryGetValue(p.Handle, out var layer)
            ? new ParameterLayout(p.numel(), layer.OutChannels, layer.KeptColumns())
            : new ParameterLayout(p.numel())).ToArray();
    }

    /// <summary>Steps in a row whose update was skipped for a gradient that is not finite.</summary>
    public int SkippedInARow { get; private set; }

    /// <summary>
    /// Finishes a step whose gradients hold the sum over all M micro-batches: average (unless the exchange already
    /// divided by M, <paramref name="gradientsAveraged"/>), guard and apply the update. Every replica holds the same
    /// sum, so all decide alike: a gradient whose norm is not finite (it holds NaN or ±∞) leaves weights, momentum and
    /// the weight average as they are and returns false, more than --max-skipped-steps such steps in a row stop the run,
    /// and --clip-grad-norm scales a larger gradient down to that norm (as torch.nn.utils.clip_grad_norm_).
    /// </summary>
    public bool ApplyUpdate(double learningRate, bool gradientsAveraged = false)
    {
        if (!gradientsAveraged) Gradients.Scale(1.0 / options.MicroBatches);
        double norm = Gradients.Norm();
        if (!double.IsFinite(norm))
        {
            if (++SkippedInARow > options.MaxSkippedSteps)
                throw new InvalidOperationException($"the gradient was not finite (NaN or ∞) in {SkippedInARow} steps in a row, more than " +
                    $"--max-skipped-steps {options.MaxSkippedSteps}: the training diverged; lower --lr, add --warmup-epochs or --clip-grad-norm, and resume");
            return false;
        }
        SkippedInARow = 0;
        double clip = options.ClipGradientNorm / (norm + 1e-6);
        if (options.ClipGradientNorm > 0 && clip < 1) Gradients.Scale(clip);
        Optimizer.Step(learningRate);
        Average?.Update();
        return true;
    }

    /// <summary>
    /// Single-node condensing: layers behind the schedule at <paramref name="progress"/> drop on their own weights.
    /// Called every step, it looks at the layers (a device sync per layer) only on the first call and when the stage changes.
    /// </summary>
    public int Condense(double progress)
    {
        int stage = CondensingSchedule.StageAt(progress, options.Model.CondenseFactor);
        if (stage == checkedStage) return 0;
        checkedStage = stage;
        int moved = ModelCondensing.Apply(Model, progress);
        if (moved > 0) Average?.FollowMasks(ModelCondensing.Masks(Model));
        return moved;
    }

    /// <summary>Installs masks decided elsewhere (the coordinator's), on the model and its average.</summary>
    public void InstallMasks(IReadOnlyList<LayerMask> masks)
    {
        ModelCondensing.Install(Model, masks);
        Average?.FollowMasks(masks);
    }

    /// <summary>Starts from the weights and masks of <paramref name="path"/> (--init-from); returns whether the classifier was left new.</summary>
    public bool LoadInitialWeights(string path)
    {
        bool newClassifier = InitialWeights.Load(Model, path);
        Average?.Restart();
        return newClassifier;
    }

    /// <summary>Writes weights, buffers (masks, BN statistics), momentum and, with --ema, the averaged model.</summary>
    public void SaveState(BinaryWriter writer)
    {
        Model.save(writer);
        writer.Write(Optimizer.Buffers.Length);
        foreach (var buffer in Optimizer.Buffers) WriteTensor(writer, buffer);
        Average?.Model.save(writer);
    }

    /// <summary>Restores what <see cref="SaveState"/> wrote, into this engine's tensors (gradient views stay attached).</summary>
    public void LoadState(BinaryReader reader)
    {
        Model.load(reader, strict: true);
        int count = reader.ReadInt32();
        if (count != Optimizer.Buffers.Length)
            throw new InvalidDataException($"the state holds {count} momentum buffers, this model has {Optimizer.Buffers.Length} parameters");
        foreach (var buffer in Optimizer.Buffers) ReadTensor(reader, buffer);
        Average?.Model.load(reader, strict: true);
    }

    /// <summary>
    /// The models a replica state of a job of <paramref name="options"/> holds, for evaluation and export where no
    /// engine trains (the coordinator): the trained one and, with --ema, its average; momentum is passed over.
    /// </summary>
    public static (CondenseNet Trained, CondenseNet? Average) ReadModels(TrainingOptions options, byte[] state, Device device)
    {
        using var reader = new BinaryReader(new MemoryStream(state));
        var trained = new CondenseNet(options.Model);
        trained.load(reader, strict: true);
        int buffers = reader.ReadInt32();
        for (int i = 0; i < buffers; i++) reader.BaseStream.Seek(reader.ReadInt64() * sizeof(float), SeekOrigin.Current);
        CondenseNet? average = null;
        if (options.EmaDecay > 0)
        {
            average = new CondenseNet(options.Model);
            average.load(reader, strict: true);
        }
        return (trained.to(device), average?.to(device));
    }

    static void WriteTensor(BinaryWriter writer, Tensor tensor)
    {
        using var cpu = tensor.detach().cpu().contiguous();
        writer.Write(cpu.numel());
        writer.Write(cpu.bytes);
    }

    static void ReadTensor(BinaryReader reader, Tensor into)
    {
        long n = reader.ReadInt64();
        if (n != into.numel()) throw new InvalidDataException($"a saved tensor has {n} elements where {into.numel()} are expected");
        byte[] bytes = reader.ReadBytes(checked((int)(n * sizeof(float))));
        if (bytes.Length != n * sizeof(float)) throw new EndOfStreamException("the state ends inside a tensor");
        using var loaded = torch.tensor(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray(), into.shape);
        using var _ = torch.no_grad();
        into.copy_(loaded);
    }

    public void Dispose()
    {
        Gradients.Dispose();
        Optimizer.Dispose();
        Average?.Dispose();
        lasso.Dispose();
        Model.Dispose();
    }
}
