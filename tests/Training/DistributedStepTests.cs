using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;
using Xunit;
using static TorchSharp.torch;

namespace CondenseCluster.Tests.Training;

/// <summary>
/// The step every worker runs, driven without Kestrel or sockets: replicas in this process summing over an in-memory
/// ring must end bit-identical to each other and to the single process (a ring of one), whose step code is the same.
/// </summary>
[Collection(nameof(TrainingEngineTests))]
public class DistributedStepTests
{
    const int Steps = 4;
    static readonly TrainingOptions Job = new()
    {
        Arch = "custom", Model = TinyModels.Config() with { InChannels = 1 }, BatchSize = 8, MicroBatches = 2, Seed = 3, Lasso = 1e-4,
    };
    static readonly GradientExchange Exchange = new(BucketFloats: 500, SendMaskedGradients: false, WirePrecision.Float32);
    static readonly IImageDataset Data = new NoiseImages(64);
    static readonly MicroBatchPlan Plan = new(Job.BatchSize, Job.MicroBatches, Data.Count, Epochs: 1);

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.9)] // with the weight average, which the checksums then cover
    public async Task TwoReplicasOverARingEndWithTheSingleProcessesWeightsAndMasks(double emaDecay)
    {
        var job = Job with { EmaDecay = emaDecay };
        using var single = new TrainingEngine(job, CPU);
        Train(single, new DistributedStep(single, Plan, SingleRank.Instance, Exchange), rank: 0, size: 1);

        var ring = new InMemoryRing(2);
        using var first = new TrainingEngine(job, CPU);
        using var second = new TrainingEngine(job, CPU);
        var steps = new[] { first, second }.Select((engine, rank) => new DistributedStep(engine, Plan, ring.Member(rank), Exchange)).ToArray();
        Assert.Equal([[0], [1]], steps.Select(s => s.MicroBatches.ToArray()));
        await Task.WhenAll(new[] { first, second }.Select((engine, rank) => Task.Run(() => Train(engine, steps[rank], rank, size: 2))));

        Assert.Equal(ReplicaChecksum.Weights(single), ReplicaChecksum.Weights(first));
        Assert.Equal(ReplicaChecksum.Weights(first), ReplicaChecksum.Weights(second));
        if (emaDecay > 0)
        {
            // Each replica's running statistics, and so their averages, saw its own micro-batches; averaged, they agree.
            await Task.WhenAll(steps.Select(s => Task.Run(() => s.AverageBatchNorm(Steps))));
            foreach (var (a, b) in WeightAverage.RunningStatistics(first.Average!.Model).Zip(WeightAverage.RunningStatistics(second.Average!.Model)))
                Assert.True(Tensors.Identical(a, b));
        }
        Assert.Equal(ModelCondensing.Checksum(ModelCondensing.Masks(single.Model)), ModelCondensing.Checksum(ModelCondensing.Masks(second.Model)));
        // Condensed layers' dropped entries did not cross the ring: fewer values than the buffer holds.
        Assert.True(ring.ValuesSummed < Steps * single.Gradients.Length, $"{ring.ValuesSummed} values summed");
    }

    [Fact]
    public async Task OneReplicasStopVoteStopsEveryReplicaAfterThatStep()
    {
        var ring = new InMemoryRing(2);
        using var first = new TrainingEngine(Job, CPU);
        using var second = new TrainingEngine(Job, CPU);
        var engines = new[] { first, second };
        var outcomes = await Task.WhenAll(engines.Select((engine, rank) => Task.Run(() =>
        {
            var step = new DistributedStep(engine, Plan, ring.Member(rank), Exchange);
            using var batches = new BatchPrefetcher(Data, Plan.Requests(0, 2, Job.Seed, rank, 2), Job.Seed, threads: 1, capacity: 2);
            return Enumerable.Range(0, 2).Select(s => step.Run(s, batches, Data, 0.05, stopAfterThisStep: () => rank == 1 && s == 1).Stop).ToArray();
        })));
        Assert.All(outcomes, o => Assert.Equal([false, true], o));
    }

    [Fact]
    public async Task ImportanceAndBatchNormStatisticsAreAveragedOverTheRing()
    {
        var ring = new InMemoryRing(2);
        using var first = new TrainingEngine(Job, CPU);
        using var second = new TrainingEngine(Job with { Seed = 4 }, CPU); // other weights and statistics
        var engines = new[] { first, second };
        var others = engines[1].Model.LearnedLayers.ToArray();
        var expected = engines[0].Model.LearnedLayers.Select((l, i) =>
        {
            var (a, b) = (l.Layer.Importance(), others[i].Layer.Importance());
            return a.Cast<float>().Zip(b.Cast<float>(), (x, y) => (x + y) / 2).ToArray();
        }).ToArray();
        using var mean = engines[0].Model.modules().OfType<BatchNorm>().First().RunningMean.clone();
        using (no_grad())
        {
            engines[1].Model.modules().OfType<BatchNorm>().First().RunningMean.fill_(3);
            mean.add_(3).div_(2);
        }

        var averaged = await Task.WhenAll(engines.Select((engine, rank) => Task.Run(() =>
        {
            var step = new DistributedStep(engine, Plan, ring.Member(rank), Exchange);
            var importance = step.AverageImportance();
            step.AverageBatchNorm(0);
            return importance;
        })));
        foreach (var result in averaged)
            Assert.Equal(expected, result.Select(m => m.Cast<float>().ToArray()));
        foreach (var engine in engines)
            Assert.True(engine.Model.modules().OfType<BatchNorm>().First().RunningMean.allclose(mean, rtol: 0, atol: 1e-6));
    }

    /// <summary>Steps as a worker runs them, condensing at the schedule's steps; the masks are the same on every replica.</summary>
    static void Train(TrainingEngine engine, DistributedStep step, int rank, int size)
    {
        var plan = Plan with { Epochs = 2 };
        using var batches = new BatchPrefetcher(Data, plan.Requests(0, Steps, Job.Seed, rank, size), Job.Seed, threads: 1, capacity: 2);
        for (long s = 0; s < Steps; s++)
        {
            // A tiny run: condense at every step from the second on, as a long run would at its stage boundaries.
            if (s > 0 && engine.Condense(0.5 * s / Steps + 0.01) > 0) step.MasksChanged();
            step.Run(s, batches, Data, LearningRate.Cosine(0.05, s, Steps));
        }
    }

    /// <summary>Deterministic noise images of one channel, 16 x 16.</summary>
    sealed class NoiseImages(int count) : IImageDataset
    {
        public string Description => "noise";
        public int Count => count;
        public int NumClasses => 10;
        public int Channels => 1;
        public int Size => 16;

        public int Label(int index) => index % NumClasses;

        public void Read(int index, Span<float> destination, Random? augmentation)
        {
            var random = new Random(index);
            for (int i = 0; i < destination.Length; i++) destination[i] = random.NextSingle() * 2 - 1;
        }
    }

    /// <summary>An all-reduce of several replicas in this process: each operation is summed in rank order once all have arrived.</summary>
    sealed class InMemoryRing(int size)
    {
        public int Size => size;
        readonly Dictionary<long, (Memory<float>[] Parts, int Arrived, TaskCompletionSource Done)> operations = [];
        long summed;

        public long ValuesSummed => Interlocked.Read(ref summed);

        public IAllReduce Member(int rank) => new Participant(this, rank);

        Task Add(int rank, Memory<float> buffer, long operation)
        {
            lock (operations)
            {
                if (!operations.TryGetValue(operation, out var entry)) entry = (new Memory<float>[size], 0, new TaskCompletionSource());
                entry.Parts[rank] = buffer;
                entry.Arrived++;
                operations[operation] = entry;
                if (entry.Arrived < size) return entry.Done.Task;
                var sum = new float[buffer.Length];
                foreach (var part in entry.Parts) FloatPayload.AddTo(part.Span, sum);
                foreach (var part in entry.Parts) sum.CopyTo(part);
                summed += buffer.Length;
                operations.Remove(operation);
                entry.Done.SetResult();
                return entry.Done.Task;
            }
        }

        sealed class Participant(InMemoryRing ring, int rank) : IAllReduce
        {
            public int Rank => rank;
            public int Size => ring.Size;

            public Task AllReduceAsync(Memory<float> buffer, long operationId, WirePrecision precision, CancellationToken cancellationToken = default) =>
                ring.Add(rank, buffer, operationId);
        }
    }
}
