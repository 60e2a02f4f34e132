using System.Net;
using System.Reflection;
using CondenseCluster.Shared.Control;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Runtime;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Prometheus;

namespace CondenseCluster.Coordinator.Control;

/// <summary>Where the control plane listens: loopback by default; port 0 picks a free one.</summary>
public sealed record ControlSettings(string Host = "127.0.0.1", int ApiPort = 4080, int HttpPort = 4081, string? TokenFile = null);

/// <summary>
/// The coordinator's control plane, on two listeners because browsers speak HTTP/1.1 and gRPC needs HTTP/2, and a
/// cleartext port cannot offer both: the control API with the gRPC health service, and the web side (dashboard, its
/// JSON and server-sent events, /metrics for Prometheus, /healthz for probes).
/// </summary>
public sealed class ControlServer : IAsyncDisposable
{
    static readonly JsonFormatter Json = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true));
    readonly WebApplication api, web;
    readonly JobMonitor monitor;

    ControlServer(WebApplication api, WebApplication web, JobMonitor monitor) => (this.api, this.web, this.monitor) = (api, web, monitor);

    /// <summary>The control API's address (gRPC, HTTP/2 cleartext), e.g. http://127.0.0.1:4080.</summary>
    public string ApiAddress { get; private set; } = "";
    /// <summary>The dashboard's address, e.g. http://127.0.0.1:4081.</summary>
    public string WebAddress { get; private set; } = "";

    public static async Task<ControlServer> StartAsync(ControlSettings settings, ControlToken token, JobMonitor monitor, PrometheusExporter metrics, IJobControl jobs)
    {
        var address = IPAddress.Parse(settings.Host);
        var api = Builder(address, settings.ApiPort, HttpProtocols.Http2, services =>
        {
            services.AddSingleton(token).AddSingleton(monitor).AddSingleton(jobs);
            services.AddGrpc().AddServiceOptions<ControlService>(o => o.Interceptors.Add<BearerTokenInterceptor>());
            // Asked on each probe rather than from a cache refreshed seconds later: a fresh coordinator is serving at once.
            services.AddGrpcHealthChecks(o => o.UseHealthChecksCache = false).AddCheck("control", () => HealthCheckResult.Healthy("the control API is serving"));
        });
        api.MapGrpcService<ControlService>();
        api.MapGrpcHealthChecksService();

        var web = Builder(address, settings.HttpPort, HttpProtocols.Http1, services => services.AddRouting());
        MapDashboard(web, token, monitor, jobs);
        web.MapMetrics("/metrics", metrics.Registry);
        web.MapGet("/healthz", () => "ok");

        var server = new ControlServer(api, web, monitor);
        await Listen(api, settings.Host, settings.ApiPort, "--api-port");
        await Listen(web, settings.Host, settings.HttpPort, "--dashboard-port");
        server.ApiAddress = AddressOf(api);
        server.WebAddress = AddressOf(web);
        return server;
    }

    static WebApplication Builder(IPAddress address, int port, HttpProtocols protocols, Action<IServiceCollection> services)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel => kestrel.Listen(address, port, listen => listen.Protocols = protocols));
        // Streams to watchers end when the monitor closes; nothing else is long.
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = TimeSpan.FromSeconds(2));
        builder.Services.AddSingleton<IHostLifetime, EmbeddedHostLifetime>();
        services(builder.Services);
        return builder.Build();
    }

    /// <summary>Starts a listener; a port another program holds (often a coordinator still running) is a configuration error.</summary>
    static async Task Listen(WebApplication app, string host, int port, string option)
    {
        try
        {
            await app.StartAsync();
        }
        catch (IOException e) when (e.InnerException is AddressInUseException)
        {
            throw new ConfigurationException(
                $"{host}:{port} is already in use (another coordinator still running?); stop it, or pass {option} with a free port (0: any free one)");
        }
    }

    static string AddressOf(WebApplication app) =>
        app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();

    static void MapDashboard(IEndpointRouteBuilder web, ControlToken token, JobMonitor monitor, IJobControl jobs)
    {
        string page = ReadDashboard();
        web.MapGet("/", () => Results.Content(page, "text/html; charset=utf-8"));
        web.MapGet("/api/snapshot", () => Results.Content(Json.Format(monitor.Snapshot()), "application/json"));
        web.MapGet("/api/masks/{layer:int}", (int layer) => monitor.Mask(layer) is { } mask
            ? Results.Content(Json.Format(mask), "application/json")
            : Results.NotFound(new { error = $"layer {layer}: no such learned group convolution" }));
        web.MapGet("/api/stream", async (HttpContext http, long? after) =>
        {
            // A reconnecting EventSource names the last update it saw.
            if (long.TryParse(http.Request.Headers["Last-Event-ID"], out long last)) after = last;
            http.Response.ContentType = "text/event-stream";
            http.Response.Headers.CacheControl = "no-cache";
            await http.Response.Body.FlushAsync(http.RequestAborted);
            await foreach (var update in monitor.Watch(after ?? 0, http.RequestAborted))
            {
                await http.Response.WriteAsync($"id: {update.Sequence}\ndata: {Json.Format(update)}\n\n", http.RequestAborted);
                await http.Response.Body.FlushAsync(http.RequestAborted);
            }
        });
        web.MapPost("/api/stop", (HttpRequest http) => Control(http, token, async () => $"the job stopped: {(await jobs.StopAsync("the dashboard", now: false)).Reason}"));
        web.MapPost("/api/checkpoint", (HttpRequest http) => Control(http, token, async () =>
        {
            var (path, step) = await jobs.CheckpointAsync();
            return $"checkpoint of step {step}: {path}";
        }));
        web.MapPost("/api/export", (HttpRequest http, ExportBody? body) => Control(http, token, async () =>
        {
            var (path, step, _) = await jobs.ExportAsync(string.IsNullOrWhiteSpace(body?.Path) ? null : body.Path);
            return $"converted model of step {step}: {path}";
        }));
    }

    /// <summary>The dashboard's export request: where to write, or the default when empty.</summary>
    sealed record ExportBody(string? Path);

    /// <summary>A dashboard control: refused without the token; its answer or refusal as JSON.</summary>
    static async Task<IResult> Control(HttpRequest http, ControlToken token, Func<Task<string>> action)
    {
        string? authorization = http.Headers.Authorization;
        if (!token.Accepts(authorization)) return Results.Json(new { error = ControlToken.Refusal(authorization) }, statusCode: StatusCodes.Status401Unauthorized);
        try { return Results.Json(new { message = await action() }); }
        catch (InvalidOperationException e) { return Results.Json(new { error = e.Message }, statusCode: StatusCodes.Status409Conflict); }
        catch (ArgumentException e) { return Results.Json(new { error = e.Message }, statusCode: StatusCodes.Status400BadRequest); }
    }

    static string ReadDashboard()
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("CondenseCluster.Coordinator.Control.dashboard.html")
            ?? throw new InvalidOperationException("the dashboard page is not embedded in the coordinator; rebuild it");
        return new StreamReader(stream).ReadToEnd();
    }

    public async ValueTask DisposeAsync()
    {
        monitor.Close();
        await api.StopAsync();
        await web.StopAsync();
        await api.DisposeAsync();
        await web.DisposeAsync();
    }
}
