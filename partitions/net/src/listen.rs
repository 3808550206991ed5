//! The roles that only listen, below the stack: the bystander, which counts
//! every frame its device receives (through `virtio-drivers`, so that it counts
//! what a stack would ignore too), and the deaf partition, whose driver (the
//! SDK's raw one) makes both queues ready and never posts a receive buffer.
//! Both end once no partition but `waiters` others (bystanders like them) can
//! run.

use septum_abi::virtio::net::{RECEIVE_QUEUE, TRANSMIT_QUEUE};
use septum_sdk::net::Port;
use septum_sdk::virtio::{Device, DeviceMemory, Queue, Rings, Transport, feature};
use septum_sdk::{println, slot, yield_now};

static RINGS: [DeviceMemory<Rings>; 2] = [
    DeviceMemory::new(Rings::new()),
    DeviceMemory::new(Rings::new()),
];

/// Whether to go on waiting: some partition beyond the `waiters` can run.
fn others_run(waiters: u64) -> bool {
    yield_now(slot::SELF).is_ok_and(|others| others > waiters)
}

/// Counts the frames that arrive until the others are done.
pub fn bystander(waiters: u64) -> Result<(), &'static str> {
    let mut port = Port::open().map_err(|_| "no net device")?;
    println!("bystander: listening");
    let mut frames = 0u64;
    loop {
        let driver = port.driver();
        while let Ok(buffer) = driver.receive() {
            frames += 1;
            driver
                .recycle_rx_buffer(buffer)
                .map_err(|_| "cannot post again")?;
        }
        if !others_run(waiters) {
            break;
        }
    }
    println!("bystander: received {frames} frames");
    Ok(())
}

/// Brings the device up with no receive buffer posted and waits; checks
/// nothing was written.
pub fn deaf(waiters: u64) -> Result<(), &'static str> {
    let mut rx = Queue::new(&RINGS[0], 8).ok_or("ring memory taken")?;
    let tx = Queue::new(&RINGS[1], 8).ok_or("ring memory taken")?;
    let transport = Transport::new(Device::Net);
    transport
        .negotiate(Device::Net, feature::NET_MAC)
        .and_then(|_| transport.set_queue(RECEIVE_QUEUE as u16, &rx))
        .and_then(|()| transport.set_queue(TRANSMIT_QUEUE as u16, &tx))
        .and_then(|()| transport.driver_ok())
        .map_err(|e| e.name())?;
    println!("deaf: device up, no receive buffer posted");
    while others_run(waiters) {}
    match (rx.take_used(), transport.needs_reset()) {
        (None, false) => {
            println!("deaf: nothing written, device live");
            Ok(())
        }
        _ => Err("WRITTEN or broken"),
    }
}
