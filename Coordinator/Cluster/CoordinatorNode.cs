using System.Text.Json;
using Akka.Actor;
using CondenseCluster.Coordinator.Control;
using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Export;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;
using CondenseCluster.Shared.Training;
using TorchSharp;

namespace CondenseCluster.Coordinator.Cluster;

/// <summary>A job to run: its configuration (null: the resumed checkpoint's), and where it writes, how many workers it waits for, where it resumes from.</summary>
public sealed record JobRequest(TrainingOptions? Options, string? Output = null, int Workers = 0, string? Resume = null, long? StopAfterStep = null,
    string? InitFrom = null);

/// <summary>
/// This process as the coordinator node: its Akka node (its own seed) with the coordinator actor, and the jobs it runs
/// there one at a time, each with its local worker processes and the logs in its output folder (metrics.jsonl,
/// TensorBoard events, job.json). The control API and the train command start and steer jobs through it.
/// </summary>
public sealed class CoordinatorNode : IJobControl, IDisposable
{
    readonly object gate = new();
    readonly ClusterSettings cluster;
    readonly RunSettings defaults;
    readonly JobMonitor monitor;
    readonly ITrainingObserver always;
    readonly ReplicaStateClient states = new();
    readonly ActorSystem system;
    readonly IActorRef coordinator;
    (Task<JobOutcome> Ended, string Output)? job;
    bool running;

    /// <param name="defaults">How jobs run here; their output folder and resume point come with each request.</param>
    /// <param name="always">Observers of every job besides the monitor (the console, the metrics exporter).</param>
    public CoordinatorNode(ClusterSettings cluster, RunSettings defaults, JobMonitor monitor, ITrainingObserver always)
    {
        (this.cluster, this.defaults, this.monitor, this.always) = (cluster, defaults, monitor, always);
        system = ClusterNode.Start("coordinator", cluster.Endpoint);
        var node = Akka.Cluster.Cluster.Get(system);
        if (cluster.Endpoint.Seeds is not { Count: > 0 }) node.Join(node.SelfAddress); // the first node: its own seed
        coordinator = system.ActorOf(Props.Create(() => new CoordinatorActor()), ClusterNode.CoordinatorName);
        Address = node.SelfAddress.ToString();
    }

    /// <summary>The Akka address workers join (their --seed is its host:port).</summary>
    public string Address { get; }

    /// <summary>
    /// Starts a job; the task it returns ends with the job. Throws <see cref="InvalidOperationException"/> while another
    /// job runs, and <see cref="JobRequestException"/> for a job that cannot run.
    /// </summary>
    public async Task<Task<JobOutcome>> StartAsync(JobRequest request)
    {
        lock (gate)
        {
            if (running) throw new InvalidOperationException("a job is running: stop it first, or wait for it to end");
            running = true;
        }
        RunLogs? logs = null;
        bool announced = false;
        try
        {
            var (run, workers, options, data, start, events) = Prepare(request);
            Directory.CreateDirectory(run.OutputFolder);
            run = run with { RunId = RunIdentity.Of(run.OutputFolder, resuming: run.ResumeFrom is not null) };
            File.WriteAllText(Path.Combine(run.OutputFolder, "job.json"), JsonSerializer.Serialize(options, new JsonSerializerOptions { WriteIndented = true }));
            logs = new RunLogs(run.OutputFolder);
            var observer = new Observers(monitor, always, logs.Observer);
            monitor.JobAccepted($"{options.Arch} on {data.Train.Description}", run.OutputFolder);
            announced = true;
            foreach (var e in events) observer.Event(e);
            if (LearningRate.Scaled(options) is { } scaled) observer.Event(scaled);

            var jobCluster = cluster with { ExpectedWorkers = workers };
            var accepted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var ended = new TaskCompletionSource<JobOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
            coordinator.Tell(new StartJob(host => new TrainingJob(options, run, data, start, jobCluster, observer, host, states), accepted, ended));
            await accepted.Task;

            observer.Event(new CoordinatorWaiting(Address, workers, MoreToStart: cluster.LocalWorkers < workers));
            var local = new LocalWorkers(cluster.LocalWorkers, Address, cluster.WorkerDevice, cluster.WorkerThreads,
                (name, code) => coordinator.Tell(new LocalWorkerExited(name, code)));
            var jobLogs = logs;
            var outcome = ended.Task.ContinueWith(t =>
            {
                local.Dispose();
                jobLogs.Dispose();
                monitor.JobEnded(t.Result.End, t.Result.Reason);
                lock (gate) running = false;
                return t.Result;
            }, TaskScheduler.Default);
            lock (gate) job = (outcome, run.OutputFolder);
            return outcome;
        }
        catch (Exception e)
        {
            if (announced) monitor.JobEnded(JobEnd.Failed, e.Message);
            logs?.Dispose();
            lock (gate) running = false;
            throw;
        }
    }

    /// <summary>The replica state of step 0 with the weights and masks of <paramref name="path"/> (--init-from), for the workers to load.</summary>
    static StartingState InitialState(TrainingOptions options, string path, Action<TrainingEvent> report)
    {
        using var engine = new TrainingEngine(options, torch.CPU);
        report(new InitializedFrom(path, engine.LoadInitialWeights(path)));
        using var state = new MemoryStream();
        using (var writer = new BinaryWriter(state, System.Text.Encoding.UTF8, leaveOpen: true)) engine.SaveState(writer);
        return new StartingState(0, state.ToArray(), path);
    }

    /// <summary>
    /// Everything a job needs before it starts, checked: where it runs, its configuration, its data, the state it starts
    /// from (a checkpoint's, --init-from's, or none: the seed's), and the events of finding them.
    /// </summary>
    (RunSettings Run, int Workers, TrainingOptions Options, (IImageDataset Train, IImageDataset Test) Data, StartingState? Start, List<TrainingEvent> Events)
        Prepare(JobRequest request)
    {
        var run = defaults with { OutputFolder = OutputFolder(request), ResumeFrom = request.Resume, StopAfterStep = request.StopAfterStep, InitFrom = request.InitFrom };
        int workers = request.Workers > 0 ? request.Workers : cluster.ExpectedWorkers;
        if (workers < cluster.LocalWorkers) throw new JobRequestException("workers", $"{workers} must be at least the {cluster.LocalWorkers} local workers");
        var events = new List<TrainingEvent>();
        var uncheckpointed = Checked("resume", () => UncheckpointedRun(run.ResumeFrom, run.OutputFolder));
        var resume = uncheckpointed is null ? Checked("resume", () => CheckpointStore.Resolve(run.ResumeFrom, events.Add)) : null;
        if (uncheckpointed is not null)
            events.Add(new Notice($"{run.OutputFolder} holds no checkpoint yet: the job starts again with its job.json, and continues from the " +
                                  "workers' memory where they still hold it", EventKind.Checkpoint));
        var options = resume?.Header.Options ?? uncheckpointed ?? request.Options
            ?? throw new JobRequestException("configuration", "a job needs a configuration, or a checkpoint to resume from");
        var data = Checked("configuration", () =>
        {
            options.Validate();
            var opened = Datasets.Open(options.Dataset, options.DataDir, message => events.Add(new Notice(message)), options.Model.InputSize);
            Datasets.CheckFits(opened.Train, options.Model);
            new MicroBatchPlan(options.BatchSize, options.MicroBatches, opened.Train.Count, options.Epochs).Validate();
            return opened;
        });
        StartingState? start = null;
        if (resume is not null)
        {
            events.Add(new ResumedFromCheckpoint(resume.Path, resume.Header.Step));
            start = new StartingState(resume.Header.Step, resume.ReadState(), resume.Path);
        }
        else if (run.InitFrom is { } from) start = Checked("init-from", () => InitialState(options, from, events.Add));
        return (run, workers, options, data, start, events);
    }

    /// <summary>
    /// The configuration of a run that --resume names as a folder with a job.json but no checkpoint yet (a coordinator
    /// restarted before its first one): its workers may still hold the job, so it is not given up. Null otherwise.
    /// </summary>
    static TrainingOptions? UncheckpointedRun(string? resumeFrom, string runFolder)
    {
        string job = Path.Combine(runFolder, "job.json");
        if (resumeFrom is null || !Directory.Exists(resumeFrom) || !File.Exists(job)) return null;
        if (CheckpointStore.OfRun(runFolder).Any) return null;
        try
        {
            return JsonSerializer.Deserialize<TrainingOptions>(File.ReadAllText(job)) ?? throw new JsonException("it is null");
        }
        catch (JsonException e)
        {
            throw new CorruptFileException($"{job} is not a job configuration ({e.Message}); start the job again with its options instead of --resume");
        }
    }

    /// <summary>Runs a part of a request's preparation; what it finds wrong is a fault of <paramref name="field"/>.</summary>
    static T Checked<T>(string field, Func<T> part)
    {
        try { return part(); }
        catch (Exception e) when (e is ArgumentException or ConfigurationException or IOException or CorruptFileException or DataFormatException
                                      or DataLoadException)
        {
            throw new JobRequestException(field, e.Message);
        }
    }

    /// <summary>
    /// Stops the running job: gracefully (the step in flight completes, its boundary is checkpointed, then the job
    /// ends), or <paramref name="now"/> (its newest checkpoint stays the place to resume from). The task ends with the job.
    /// </summary>
    public Task<JobOutcome> StopAsync(string by, bool now)
    {
        var current = Current() ?? throw new InvalidOperationException("no job is running");
        coordinator.Tell(new StopJob(by, now));
        return current.Ended;
    }

    public Task<(string Path, long Step)> CheckpointAsync()
    {
        if (Current() is null) throw new InvalidOperationException("no job is running");
        var reply = new TaskCompletionSource<(string Path, long Step)>(TaskCreationOptions.RunContinuationsAsynchronously);
        coordinator.Tell(new CheckpointNow(reply));
        return reply.Task;
    }

    /// <summary>
    /// Converts the newest state into the deployable model: a checkpoint taken now while a job runs, else the newest
    /// checkpoint of the last job. Written to <paramref name="path"/>, or to exports/ in the job's output folder.
    /// </summary>
    public async Task<(string Path, long Step, CostRow Cost)> ExportAsync(string? path)
    {
        if (path is not null && ConvertedModelFile.Refusal(path) is { } refusal) throw new JobRequestException("path", refusal);
        string output;
        LoadedCheckpoint? checkpoint;
        if (Current() is { } current)
        {
            // Refused before a checkpoint is taken for nothing; the export checks the masks it converts anyway.
            if (monitor.Status() is { State: "running" or "recovering" } status && status.Stage < status.FinalStage)
                throw new InvalidOperationException(CheckpointExport.NotCondensed(status.Step, status.Stage, status.FinalStage));
            var (written, _) = await CheckpointAsync();
            output = current.Output;
            checkpoint = Checkpoint.Read(written);
        }
        else
        {
            output = job?.Output ?? throw new InvalidOperationException("no job has run on this coordinator: start one first");
            checkpoint = CheckpointStore.Resolve(output, _ => { }) ?? throw new InvalidOperationException($"the last job left no checkpoint in {output}");
        }
        string target = Path.GetFullPath(path ?? Path.Combine(output, "exports", $"model-converted-step-{checkpoint.Header.Step:D9}.ccm"));
        var cost = await Task.Run(() => CheckpointExport.Export(checkpoint, target));
        new Observers(monitor, always).Event(new ModelExported(checkpoint.Header.Step, target));
        return (target, checkpoint.Header.Step, cost);
    }

    (Task<JobOutcome> Ended, string Output)? Current()
    {
        lock (gate) return running && job is { } current && !current.Ended.IsCompleted ? current : null;
    }

    /// <summary>Where a job writes: as requested; a resumed run next to its checkpoints; a new one into runs/ with a timestamp.</summary>
    public static string OutputFolder(JobRequest request)
    {
        if (request.Output is { } output) return Path.GetFullPath(output);
        if (request.Resume is not { } resumeFrom) return Path.GetFullPath(Path.Combine("runs", DateTime.Now.ToString("yyyyMMdd-HHmmss")));
        string folder = File.Exists(resumeFrom) ? Path.GetDirectoryName(Path.GetFullPath(resumeFrom))! : Path.GetFullPath(resumeFrom);
        return Path.GetFileName(folder) == "checkpoints" ? Path.GetDirectoryName(folder)! : folder;
    }

    /// <summary>
    /// <paramref name="request"/> for the run in <paramref name="folder"/> (--resume-if-present, which the helm chart
    /// gives a coordinator pod so that a restart continues its run): resumed where a run has started (from its newest
    /// checkpoint, or before the first one from its job.json and the workers' memory), started anew there where none has;
    /// null when that run has finished (its trained model is written).
    /// </summary>
    public static JobRequest? ResumeIfPresent(JobRequest request, string folder)
    {
        if (request.Resume is not null) throw new ArgumentException("--resume and --resume-if-present both name where to resume from: give one of them");
        if (request.Output is { } output && Path.GetFullPath(output) != Path.GetFullPath(folder))
            throw new ArgumentException($"--out {output} is not --resume-if-present {folder}: a run resumes in its own folder");
        if (File.Exists(Path.Combine(folder, "model-trained.ccm"))) return null;
        bool started = CheckpointStore.OfRun(folder).Any || File.Exists(Path.Combine(folder, "job.json"));
        return request with { Output = folder, Resume = started ? folder : null };
    }

    public void Dispose()
    {
        ClusterNode.Leave(system);
        states.Dispose();
    }
}
