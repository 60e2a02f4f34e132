using System.CommandLine;
using CondenseCluster.Coordinator.Control;
using CondenseCluster.Shared.Control;
using Grpc.Core;
using Grpc.Net.Client;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace CondenseCluster.Coordinator.Cli;

/// <summary>
/// The control API's command-line client: <c>start</c>, <c>status</c>, <c>watch</c>, <c>workers</c>, <c>stop</c>,
/// <c>checkpoint</c>, <c>export</c>, pointed at a coordinator with --address and authenticated with its token.
/// </summary>
static class ControlCommands
{
    static readonly Option<string> Address = new("--address")
    {
        Description = "the coordinator's control API (default: $CONDENSE_CONTROL_ADDRESS, else http://127.0.0.1:4080)",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("CONDENSE_CONTROL_ADDRESS") ?? "http://127.0.0.1:4080",
    };
    static readonly Option<string?> Token = new("--token") { Description = $"the control token (default: ${ControlToken.EnvironmentVariable}, else the token file)" };
    static readonly Option<string?> TokenFile = new("--token-file") { Description = $"file holding the token (default: {ControlToken.DefaultFile})" };

    public static IEnumerable<Command> Create()
    {
        var config = new Option<FileInfo?>("--config") { Description = "job configuration (JSON, e.g. the job.json of an earlier run)" };
        var output = new Option<string?>("--out") { Description = "output folder on the coordinator's machine" };
        var workers = new Option<int>("--workers") { Description = "workers the job waits for (0: the coordinator's --workers)" };
        var resume = new Option<string?>("--resume") { Description = "checkpoint file or run folder on the coordinator's machine to continue" };
        var initFrom = new Option<string?>("--init-from") { Description = "training-form model (.ccm/.pt) on the coordinator's machine whose weights and masks the job starts from" };
        yield return Client("start", "start a job on an idle coordinator", [config, output, workers, resume, initFrom], async (control, headers, result) =>
        {
            var request = new StartJobRequest
            {
                Configuration = result.GetValue(config) is { } file ? await File.ReadAllTextAsync(file.FullName) : "",
                Output = result.GetValue(output) ?? "", Workers = result.GetValue(workers), Resume = result.GetValue(resume) ?? "",
                InitFrom = result.GetValue(initFrom) ?? "",
            };
            var status = await control.StartJobAsync(request, headers);
            AnsiConsole.MarkupLine($"started: [bold]{Markup.Escape(status.Description)}[/], output {Markup.Escape(status.OutputFolder)}");
            return 0;
        });
        yield return Client("status", "the job's status", [], async (control, headers, _) =>
        {
            AnsiConsole.Write(StatusTable(await control.GetStatusAsync(new GetStatusRequest(), headers)));
            return 0;
        });
        yield return Client("workers", "the job's workers and where their time goes", [], async (control, headers, _) =>
        {
            foreach (string line in WorkerLines((await control.ListWorkersAsync(new ListWorkersRequest(), headers)).Workers)) Console.WriteLine(line);
            return 0;
        });
        var now = new Option<bool>("--now") { Description = "stop at once, without the checkpoint at the next step boundary (the newest checkpoint stays the place to resume from)" };
        yield return Client("stop", $"stop the job: {NodeOptions.GracefulStop}", [now], async (control, headers, result) =>
        {
            var status = await control.StopJobAsync(new StopJobRequest { Now = result.GetValue(now) }, headers);
            Console.WriteLine($"{status.State} at step {status.Step}: {status.Reason}");
            return 0;
        });
        yield return Client("checkpoint", "write a checkpoint at the next step boundary", [], async (control, headers, _) =>
        {
            var reply = await control.CheckpointAsync(new CheckpointRequest(), headers);
            Console.WriteLine($"checkpoint of step {reply.Step}: {reply.Path}");
            return 0;
        });
        var path = new Option<string?>("--path") { Description = "file to write on the coordinator's machine: .ccm, .pt/.pth for PyTorch or .onnx for ONNX (default: <output>/exports/)" };
        yield return Client("export", "convert the newest state into the deployable condensed model", [path], async (control, headers, result) =>
        {
            var reply = await control.ExportAsync(new ExportRequest { Path = result.GetValue(path) ?? "" }, headers);
            Console.WriteLine($"converted model of step {reply.Step}: {reply.Path} ({reply.Parameters:N0} parameters, {reply.Flops:N0} FLOPs)");
            return 0;
        });
        yield return Client("watch", "follow the job live until it ends", [], Watch);
    }

    static Command Client(string name, string description, Option[] options, Func<Shared.Control.Control.ControlClient, Metadata, ParseResult, Task<int>> action)
    {
        var command = new Command(name, description + " (control API client)");
        foreach (var option in options.Concat([Address, Token, TokenFile])) command.Options.Add(option);
        command.SetAction(result =>
        {
            string address = result.GetValue(Address)!;
            using var channel = GrpcChannel.ForAddress(address);
            var headers = new Metadata { { "authorization", $"Bearer {ResolveToken(result)}" } };
            try { return action(new Shared.Control.Control.ControlClient(channel), headers, result).GetAwaiter().GetResult(); }
            catch (RpcException e) when (e.StatusCode == StatusCode.Unavailable)
            {
                Console.Error.WriteLine($"error: cannot reach the coordinator's control API at {address}: {e.Status.Detail} (is it running? see --address)");
                return 1;
            }
            catch (RpcException e)
            {
                Console.Error.WriteLine($"error: {e.Status.Detail} ({e.StatusCode})");
                return 1;
            }
        });
        return command;
    }

    static string ResolveToken(ParseResult result)
    {
        if (result.GetValue(Token) is { Length: > 0 } token) return token;
        if (Environment.GetEnvironmentVariable(ControlToken.EnvironmentVariable) is { Length: > 0 } fromEnvironment) return fromEnvironment;
        string file = result.GetValue(TokenFile) ?? ControlToken.DefaultFile;
        return File.Exists(file) ? File.ReadAllText(file).Trim()
            : throw new ArgumentException($"no control token: pass --token, set ${ControlToken.EnvironmentVariable}, or point --token-file at the file the coordinator printed");
    }

    /// <summary>Follows the updates: a live table on a terminal, a line every 10 s otherwise; ends with the job.</summary>
    static async Task<int> Watch(Shared.Control.Control.ControlClient control, Metadata headers, ParseResult result)
    {
        var status = await control.GetStatusAsync(new GetStatusRequest(), headers);
        var workers = new SortedDictionary<string, WorkerStatus>(StringComparer.Ordinal);
        foreach (var worker in (await control.ListWorkersAsync(new ListWorkersRequest(), headers)).Workers) workers[worker.Id] = worker;
        var events = new Queue<JobEvent>();
        using var call = control.Watch(new WatchRequest(), headers);
        bool interactive = !Console.IsOutputRedirected;
        var printed = DateTime.MinValue;
        IRenderable View() => new Rows(StatusTable(status), new Rows(WorkerLines(workers.Values, compact: true).Select(line => new Text(line))),
            new Rows(events.Select(e => new Markup($"[grey]{DateTimeOffset.FromUnixTimeMilliseconds(e.TimeUnixMs).ToLocalTime():HH:mm:ss}[/] {e.Kind}: {Markup.Escape(e.Message)}"))));
        async Task Follow(Action refresh)
        {
            refresh();
            await foreach (var update in call.ResponseStream.ReadAllAsync())
            {
                switch (update.UpdateCase)
                {
                    case JobUpdate.UpdateOneofCase.Status: status = update.Status; break;
                    case JobUpdate.UpdateOneofCase.Worker: workers[update.Worker.Id] = update.Worker; break;
                    case JobUpdate.UpdateOneofCase.Event:
                        events.Enqueue(update.Event);
                        if (events.Count > 8) events.Dequeue();
                        if (!interactive) Console.WriteLine($"{update.Event.Kind}: {update.Event.Message}");
                        break;
                }
                refresh();
                if (Ended(status)) return;
            }
        }
        if (interactive) await AnsiConsole.Live(View()).StartAsync(async live => await Follow(() => live.UpdateTarget(View())));
        else
            await Follow(() =>
            {
                if (DateTime.UtcNow - printed < TimeSpan.FromSeconds(10) && !Ended(status)) return;
                printed = DateTime.UtcNow;
                Console.WriteLine($"{status.State}: step {status.Step}/{status.TotalSteps}, epoch {status.Epoch + 1}/{status.Epochs}, loss {status.Loss:F4}, " +
                    $"{status.ImagesPerSecond:F0} images/s, {status.WorkersAlive} workers, ETA {TimeSpan.FromSeconds(Math.Round(status.EtaSeconds))}");
            });
        Console.WriteLine($"job {status.State}{(status.Reason.Length > 0 ? $": {status.Reason}" : "")}");
        return status.State == "failed" ? 1 : 0;
    }

    static bool Ended(JobStatus status) => status.State is "completed" or "failed" or "stopped";

    static Table StatusTable(JobStatus s)
    {
        var table = new Table().AddColumns("job", Markup.Escape(s.Description)).HideHeaders();
        table.AddRow("state", s.State + (s.Reason.Length > 0 ? $" ({Markup.Escape(s.Reason)})" : ""));
        table.AddRow("progress", $"step {s.Step}/{s.TotalSteps}, epoch {s.Epoch + 1}/{s.Epochs}, ETA {TimeSpan.FromSeconds(Math.Round(s.EtaSeconds))}");
        table.AddRow("training", $"loss {s.Loss:F4}, accuracy {s.Accuracy:P2}, lr {s.LearningRate:G4}, test top-1 {s.TestTop1:P2}");
        table.AddRow("condensing", $"stage {s.Stage} of {s.FinalStage}, mask version {s.MaskVersion}, sparsity {s.Sparsity:P1}");
        table.AddRow("throughput", $"{s.ImagesPerSecond:F1} images/s with {s.WorkersAlive} workers");
        table.AddRow("output", Markup.Escape(s.OutputFolder));
        return table;
    }

    /// <summary>
    /// The workers, a line each: state, last step and where its time went, then (unless <paramref name="compact"/>, the
    /// live view) the bytes it sent, its device and why it left. Lines rather than a table: the columns would not fit.
    /// </summary>
    static IEnumerable<string> WorkerLines(IEnumerable<WorkerStatus> workers, bool compact = false) =>
        workers.Select(w =>
            $"{w.Id,-9} {w.State,-9} step {w.Step}: {w.StepMs:F0} ms = compute {w.ComputeMs:F0}, all-reduce {w.AllReduceMs:F0}, data {w.DataWaitMs:F0}; " +
            $"{w.ImagesPerSecond:F0} img/s" +
            (compact ? "" : $"; sent {w.AllReduceBytes / 1e6:F2} MB; {w.Device}{(w.Detail.Length > 0 ? $"; {w.Detail}" : "")}"));
}
