using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;
using Prometheus;

namespace CondenseCluster.Coordinator.Control;

/// <summary>
/// The job's metrics in Prometheus' model, served at /metrics: counters grow with what the job reports (steps,
/// per-worker time and bytes, failures, recoveries); gauges are read from the <see cref="JobMonitor"/> at each scrape.
/// A registry of its own, so that several coordinators in one process (tests) do not share metrics.
/// </summary>
public sealed class PrometheusExporter : ITrainingObserver
{
    public CollectorRegistry Registry { get; } = Metrics.NewCustomRegistry();
    readonly Counter steps, failures, recoveries, computeSeconds, allReduceSeconds, dataWaitSeconds, allReduceBytes;
    readonly Histogram stepSeconds;

    public PrometheusExporter(JobMonitor monitor)
    {
        var factory = Metrics.WithCustomRegistry(Registry);
        steps = factory.CreateCounter("condense_steps_total", "Global training steps completed");
        stepSeconds = factory.CreateHistogram("condense_step_seconds", "Duration of a global step (the slowest worker's compute, all-reduce wait and data wait)",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.01, 2, 14) });
        failures = factory.CreateCounter("condense_worker_failures_total", "Workers lost or excluded from the job");
        recoveries = factory.CreateCounter("condense_recoveries_total", "Recoveries after which training resumed");
        string[] worker = ["worker"];
        computeSeconds = factory.CreateCounter("condense_worker_compute_seconds_total", "Forward, backward and update time per worker", worker);
        allReduceSeconds = factory.CreateCounter("condense_worker_allreduce_seconds_total", "Time per worker spent waiting for the gradient all-reduce", worker);
        dataWaitSeconds = factory.CreateCounter("condense_worker_data_wait_seconds_total", "Time per worker spent waiting for the data loader", worker);
        allReduceBytes = factory.CreateCounter("condense_worker_allreduce_bytes_total", "Gradient bytes each worker sent through the ring", worker);

        var imagesPerSecond = factory.CreateGauge("condense_images_per_second", "Training throughput of the last step");
        var loss = factory.CreateGauge("condense_loss", "Training loss of the last step");
        var accuracy = factory.CreateGauge("condense_train_accuracy", "Training accuracy of the last step");
        var testTop1 = factory.CreateGauge("condense_test_top1", "Test top-1 accuracy of the last evaluation");
        var learningRate = factory.CreateGauge("condense_learning_rate", "Learning rate of the last step");
        var alive = factory.CreateGauge("condense_workers_alive", "Workers registered or training");
        var maskVersion = factory.CreateGauge("condense_mask_version", "Version of the masks in force");
        var sparsity = factory.CreateGauge("condense_sparsity", "Fraction of the learned group convolutions' weights pruned");
        var step = factory.CreateGauge("condense_step", "Global steps completed in the current job");
        var totalSteps = factory.CreateGauge("condense_total_steps", "Global steps of the current job");
        Registry.AddBeforeCollectCallback(() =>
        {
            var status = monitor.Status();
            imagesPerSecond.Set(status.ImagesPerSecond);
            loss.Set(status.Loss);
            accuracy.Set(status.Accuracy);
            testTop1.Set(status.TestTop1);
            learningRate.Set(status.LearningRate);
            alive.Set(status.WorkersAlive);
            maskVersion.Set(status.MaskVersion);
            sparsity.Set(status.Sparsity);
            step.Set(status.Step);
            totalSteps.Set(status.TotalSteps);
        });
    }

    public void Started(RunStarted run) { }

    public void Step(StepMetrics step)
    {
        steps.Inc();
        stepSeconds.Observe(step.StepMs / 1000);
    }

    public void Epoch(EpochMetrics epoch) { }

    public void Event(TrainingEvent e)
    {
        if (e.Kind == EventKind.Recovered) recoveries.Inc();
    }

    public void Finished(TrainingSummary summary) { }

    public void Worker(WorkerReport report)
    {
        if (report.State is WorkerState.Lost or WorkerState.Excluded) failures.Inc();
        if (report.Step < 0) return;
        computeSeconds.WithLabels(report.Worker).Inc(report.ComputeMs / 1000);
        allReduceSeconds.WithLabels(report.Worker).Inc(report.AllReduceMs / 1000);
        dataWaitSeconds.WithLabels(report.Worker).Inc(report.DataWaitMs / 1000);
        allReduceBytes.WithLabels(report.Worker).Inc(report.AllReduceBytes);
    }
}
