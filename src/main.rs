use clap::Parser;
use registry_operator::cli::{Cli, Command};

// jemalloc hands freed memory back to the system after a few seconds. glibc's malloc
// keeps it in per-thread arenas, so a registration burst left the process holding
// several times the memory it used.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", registry_operator::crd::crd_yaml()?);
            Ok(())
        }
        Command::Run(args) => {
            registry_operator::telemetry::init(args.log_format);
            registry_operator::controller::run(args).await?;
            Ok(())
        }
        Command::Standalone(args) => {
            registry_operator::telemetry::init(args.log_format);
            registry_operator::standalone::run(args).await
        }
        Command::Migrate(args) => {
            let pool = registry_operator::postgres::connect(&args.database_url, &args.schema, 2)?;
            registry_operator::postgres::migrate(&pool, &args.schema).await?;
            println!("schema {:?} is up to date", args.schema);
            Ok(())
        }
        Command::Nodes(args) => Ok(registry_operator::client::run(args).await?),
        Command::Emit(args) => {
            let published = registry_operator::emit::run(args).await?;
            println!("{published}");
            Ok(())
        }
    }
}
