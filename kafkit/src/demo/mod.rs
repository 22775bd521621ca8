//! `kafkit demo`: the whole system on one laptop, in one command.
//!
//! Starts the local stack (Tansu + registry) unless it runs already,
//! registers the schemas, creates the topics, starts producer-service and
//! consumer-service (fault injection on), posts a stream of orders over
//! HTTP and shows what becomes of each, read from the topics. Then it prints
//! a summary and what to try next, and keeps everything running until
//! Ctrl-C or `--duration`. On the way out it stops what it started, and
//! nothing else.

pub mod journeys;
pub mod screen;
pub mod services;
pub mod traffic;

use crate::dev::{self, Stack, UpArgs};
use anyhow::{Context, bail};
use journeys::{Journeys, Monitor, Topics};
use kafkit_messaging::{KafkaSettings, RetryPolicy, TopicSpec, ensure_topics};
use screen::Screen;
use services::Service;
use std::net::TcpStream;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use traffic::Sent;

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  kafkit demo                           run until Ctrl-C
  kafkit demo --duration 2m             stop by itself after two minutes
  kafkit demo --orders 200 --rate 20    a longer, faster stream")]
pub struct DemoArgs {
    #[command(flatten)]
    pub up: UpArgs,
    /// producer-service's HTTP port.
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// consumer-service's health and metrics port.
    #[arg(long, default_value_t = 8082)]
    pub ops_port: u16,
    /// Orders to post.
    #[arg(long, default_value_t = 50)]
    pub orders: usize,
    /// Orders per second.
    #[arg(long, default_value_t = 5)]
    pub rate: u32,
    /// Stop by itself this long after the services are up (e.g. 90s, 5m);
    /// default: at Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
}

const RETRY_DELAYS_MS: &str = "1000,3000";
const MAX_ATTEMPTS: &str = "3";

fn topics() -> Topics {
    let policy = RetryPolicy {
        delays: vec![Duration::ZERO; 2],
        ..RetryPolicy::default()
    };
    Topics {
        main: "orders".into(),
        retries: policy.retry_topics("orders"),
        dlq: policy.dlq_topic("orders"),
        confirmations: "order-confirmations".into(),
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    // Listen for Ctrl-C from the start, so it always ends in an orderly stop.
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        kafkit_messaging::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    for (port, flag) in [
        (args.http_port, "--http-port"),
        (args.ops_port, "--ops-port"),
    ] {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            bail!("port {port} is taken (is another demo or service running?); pass {flag}");
        }
    }
    let stack = dev::up(&args.up).await?;
    let result = with_stack(&args, &stack, stop).await;
    let stopped = tokio::task::spawn_blocking(move || dev::stop_started(&stack)).await?;
    result.and(stopped)
}

async fn with_stack(
    args: &DemoArgs,
    stack: &Stack,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut screen = Screen::detect();
    let topics = topics();
    let kafka = prepare(&mut screen, stack, &topics).await?;
    // Each service is a guard: a failure from here on kills what started.
    let (mut producer, mut consumer) = start_services(&mut screen, args, stack, &topics).await?;
    let result = show(
        args,
        &mut screen,
        &topics,
        &kafka,
        &mut stop,
        &mut [&mut producer, &mut consumer],
    )
    .await;
    // Producer first: nothing new comes in while the consumer drains.
    producer.stop().await;
    consumer.stop().await;
    let Some((monitor, mut journeys, refused)) = result? else {
        return Ok(());
    };
    // What the consumer finished while stopping.
    while let Some((order_id, topic, step)) = monitor.next(Duration::from_secs(2)).await? {
        journeys.apply(&order_id, &topic, step);
    }
    let tally = journeys.tally(&topics);
    screen.summary("Final summary", &tally, refused, &topics);
    screen.line("Stopped producer-service and consumer-service.");
    if tally.sent == 0 && args.orders > 0 {
        bail!(
            "producer-service accepted no order; see {}",
            producer.log.display()
        );
    }
    Ok(())
}

/// Stage 1: the events' schemas registered, the demo's topics created.
async fn prepare(
    screen: &mut Screen,
    stack: &Stack,
    topics: &Topics,
) -> anyhow::Result<KafkaSettings> {
    screen.line(&format!(
        "kafka {}, schema registry {}",
        stack.bootstrap_servers, stack.registry_url
    ));
    let registry = crate::schemas::Registry::at(&stack.registry_url);
    for (_, full_name, schema) in shared_events::events::all_schemas() {
        let topic = crate::schemas::default_topic(full_name).unwrap_or("orders");
        let subject = format!("{topic}-value");
        let (version, id) = crate::schemas::register(&registry, &subject, schema).await?;
        screen.line(&format!(
            "registered {full_name} as {subject} version {version} id {id}"
        ));
    }
    let kafka = KafkaSettings::new(&stack.bootstrap_servers);
    let specs: Vec<TopicSpec> = topics.all().iter().map(|t| TopicSpec::new(t, 3)).collect();
    ensure_topics(&kafka, &specs)
        .await
        .context("could not create the demo's topics")?;
    screen.line(&format!("topics {}", topics.all().join(", ")));
    Ok(kafka)
}

/// Stage 2: producer-service and consumer-service (with fault injection
/// and short retry tiers) started and ready. If the consumer fails to
/// start, the producer is stopped by its guard.
async fn start_services(
    screen: &mut Screen,
    args: &DemoArgs,
    stack: &Stack,
    topics: &Topics,
) -> anyhow::Result<(services::Service, services::Service)> {
    let log_dir = dev::state_dir().join("demo");
    let common = [
        ("KAFKA_BOOTSTRAP_SERVERS", stack.bootstrap_servers.clone()),
        ("SCHEMA_REGISTRY_URL", stack.registry_url.clone()),
        ("ORDERS_TOPIC", topics.main.clone()),
        ("CONFIRMATIONS_TOPIC", topics.confirmations.clone()),
    ];
    let api = format!("http://127.0.0.1:{}", args.http_port);
    let producer_env = [("PRODUCER_LISTEN", format!("127.0.0.1:{}", args.http_port))];
    let producer = services::start(
        "producer-service",
        &[&common[..], &producer_env].concat(),
        &format!("{api}/readyz"),
        &log_dir,
    )
    .await?;
    screen.line(&format!(
        "producer-service  {api}  (log {})",
        producer.log.display()
    ));
    let consumer_env = [
        ("CONSUMER_LISTEN", format!("127.0.0.1:{}", args.ops_port)),
        ("CONSUMER_ROLE", "all".into()),
        ("FAULTS", traffic::FAULTS.into()),
        ("RETRY_DELAYS_MS", RETRY_DELAYS_MS.into()),
        ("MAX_ATTEMPTS", MAX_ATTEMPTS.into()),
        ("LAG_INTERVAL_MS", "1000".into()),
    ];
    let consumer = services::start(
        "consumer-service",
        &[&common[..], &consumer_env].concat(),
        &format!("http://127.0.0.1:{}/readyz", args.ops_port),
        &log_dir,
    )
    .await?;
    screen.line(&format!(
        "consumer-service  http://127.0.0.1:{}/metrics  retry tiers {RETRY_DELAYS_MS} ms, {MAX_ATTEMPTS} attempts, faults {}  (log {})",
        args.ops_port,
        traffic::FAULTS,
        consumer.log.display()
    ));
    screen.line("");
    Ok((producer, consumer))
}

/// Sends the orders and shows what happens until Ctrl-C or `--duration`.
/// Returns the monitor, the journeys and the count of refused orders, or
/// None when stopped before anything was sent.
async fn show(
    args: &DemoArgs,
    screen: &mut Screen,
    topics: &Topics,
    kafka: &KafkaSettings,
    stop: &mut watch::Receiver<bool>,
    services: &mut [&mut Service],
) -> anyhow::Result<Option<(Monitor, Journeys, usize)>> {
    if *stop.borrow() {
        return Ok(None);
    }
    let monitor = Monitor::start(kafka, topics.clone())?;
    let mut journeys = Journeys::default();
    let mut refused = 0;
    let (sent_tx, mut sent_rx) = mpsc::channel(64);
    let (halt_tx, halt) = watch::channel(false);
    let api = format!("http://127.0.0.1:{}/v1/orders", args.http_port);
    let sender = tokio::spawn(send_orders(
        api.clone(),
        args.orders,
        args.rate,
        sent_tx,
        halt,
    ));
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut traffic_done = false;
    let mut summarized = false;
    screen.line(&format!(
        "Posting {} orders at {}/s to {api}: six in ten plain, two fail and recover through the retry tiers, two are dead-lettered.",
        args.orders, args.rate
    ));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            () = sleep_until(deadline) => break,
            received = sent_rx.recv(), if !traffic_done => match received {
                Some((_, Sent::Accepted { order_id })) => journeys.sent(order_id),
                Some((index, Sent::Refused { status, detail })) => {
                    refused += 1;
                    let line = screen.paint(crate::term::RED, &format!("! order #{index} refused by producer-service: {status} {detail}"));
                    screen.line(&line);
                }
                None => traffic_done = true,
            },
            seen = monitor.next(Duration::from_millis(250)) => {
                if let Some((order_id, topic, step)) = seen?
                    && let Some(notice) = journeys.apply(&order_id, &topic, step)
                    && journeys.is_ours(&order_id)
                {
                    screen.notice(&notice);
                }
            }
            _ = tick.tick() => {
                for service in services.iter_mut() {
                    if !service.is_running() {
                        bail!("{} stopped unexpectedly; see {}", service.name, service.log.display());
                    }
                }
                screen.status(&journeys.tally(topics), args.orders);
            }
        }
        if traffic_done && !summarized {
            let tally = journeys.tally(topics);
            if !tally.settled() {
                continue;
            }
            summarized = true;
            screen.summary(
                &format!("Every order is settled. Summary of {} orders:", tally.sent),
                &tally,
                refused,
                topics,
            );
            next_steps(screen, args);
        }
    }
    let _ = halt_tx.send(true);
    // Orders already posted still count: take every answer that came back.
    let _ = sender.await;
    while let Ok((_, sent)) = sent_rx.try_recv() {
        match sent {
            Sent::Accepted { order_id } => journeys.sent(order_id),
            Sent::Refused { .. } => refused += 1,
        }
    }
    screen.line("");
    screen.line("Stopping...");
    Ok(Some((monitor, journeys, refused)))
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Posts `count` orders at `rate` per second until done or halted.
async fn send_orders(
    url: String,
    count: usize,
    rate: u32,
    answers: mpsc::Sender<(usize, Sent)>,
    halt: watch::Receiver<bool>,
) {
    let client = reqwest::Client::new();
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    for index in 0..count {
        pace.tick().await;
        if *halt.borrow() {
            return;
        }
        let sent = traffic::send(&client, &url, index).await;
        if answers.send((index, sent)).await.is_err() {
            return;
        }
    }
}

fn next_steps(screen: &mut Screen, args: &DemoArgs) {
    let exe = std::env::current_exe().unwrap_or_default();
    let kafkit = if exe.components().any(|c| c.as_os_str() == "target") {
        "cargo run -q -p kafkit --"
    } else {
        "kafkit"
    };
    let mut lines = vec!["Try next, in another terminal, while the demo runs:".to_owned()];
    if args.up.broker_port != 9092 || args.up.registry_port != 8081 {
        lines.push(format!(
            "  export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{} SCHEMA_REGISTRY_URL=http://127.0.0.1:{}",
            args.up.broker_port, args.up.registry_port
        ));
    }
    lines.extend([
        format!("  {kafkit} dlq watch orders.dlq --from-beginning        # each dead letter, decoded, and why it died"),
        format!("  {kafkit} dlq inspect orders.dlq                        # what is parked, counted by error class"),
        format!("  {kafkit} dlq replay orders.dlq --class unsupported-currency --dry-run   # what a replay would send back"),
        format!("  {kafkit} console                                       # the same in a browser: http://127.0.0.1:8090"),
        format!("  {kafkit} topics describe orders                        # partitions, offsets, consumer lag"),
        format!(
            "  curl -i -X POST http://127.0.0.1:{}/v1/orders -H 'content-type: application/json' \\\n      -d '{{\"customer_id\":\"c-1\",\"items\":[{{\"sku\":\"CURSED-VASE\",\"quantity\":1,\"unit_price_cents\":1999}}],\"currency\":\"EUR\"}}'",
            args.http_port
        ),
        "Everything keeps running until Ctrl-C (or --duration); then the demo stops what it started.".to_owned(),
    ]);
    for line in lines {
        screen.line(&line);
    }
}
