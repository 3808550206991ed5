//! Collections whose capacity is fixed when the system is built.
//!
//! The kernel's state is sized from the system package at boot: a system of two
//! partitions holds two partition records, one of 64 holds 64, and no stack or
//! static grows with the limit. Everything is allocated while the system is
//! built; after that the kernel never allocates (the back ends' boot arena
//! refuses it). These types are how the core keeps that promise for the
//! collections that change while the system runs: a push past the capacity given
//! at construction is refused (as `heapless` would), never a reallocation.
//!
//! Invariant: the backing buffer's capacity is at least the capacity asked for at
//! construction and never changes afterwards.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};

/// A vector that holds at most the capacity it was built with.
#[derive(Debug)]
pub struct FixedVec<T> {
    items: Vec<T>,
    capacity: usize,
}

impl<T> FixedVec<T> {
    /// An empty vector with room for `capacity` items (allocated now).
    pub fn with_capacity(capacity: usize) -> Self {
        FixedVec {
            items: Vec::with_capacity(capacity),
            capacity,
        }
    }

    /// Appends `item`, or gives it back if the vector is full.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        if self.items.len() == self.capacity {
            return Err(item);
        }
        self.items.push(item);
        Ok(())
    }

    /// Removes and returns the last item.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop()
    }

    /// Removes item `index`, moving the last item into its place.
    pub fn swap_remove(&mut self, index: usize) -> T {
        self.items.swap_remove(index)
    }
}

impl<T> Deref for FixedVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.items
    }
}

impl<T> DerefMut for FixedVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.items
    }
}

impl<'a, T> IntoIterator for &'a FixedVec<T> {
    type Item = &'a T;
    type IntoIter = core::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// A double-ended queue that holds at most the capacity it was built with.
#[derive(Debug)]
pub struct FixedDeque<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> FixedDeque<T> {
    /// An empty queue with room for `capacity` items (allocated now).
    pub fn with_capacity(capacity: usize) -> Self {
        FixedDeque {
            items: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Appends `item` at the back, or gives it back if the queue is full.
    pub fn push_back(&mut self, item: T) -> Result<(), T> {
        if self.items.len() == self.capacity {
            return Err(item);
        }
        self.items.push_back(item);
        Ok(())
    }

    /// Removes and returns the front item.
    pub fn pop_front(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// The front item.
    pub fn front(&self) -> Option<&T> {
        self.items.front()
    }

    /// Item `index` (0 is the front), to change.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.items.get_mut(index)
    }

    /// Removes item `index` (0 is the front), keeping the others in order.
    pub fn remove(&mut self, index: usize) -> Option<T> {
        self.items.remove(index)
    }

    /// The back item, to change.
    pub fn back_mut(&mut self) -> Option<&mut T> {
        self.items.back_mut()
    }

    /// The items, front to back.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.items.iter()
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The most items it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Removes every item (the buffer stays).
    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// Keeps only the items `keep` accepts, in order.
    pub fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        self.items.retain(keep);
    }
}

impl<'a, T> IntoIterator for &'a FixedDeque<T> {
    type Item = &'a T;
    type IntoIter = alloc::collections::vec_deque::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-INIT-006
    #[test]
    fn a_full_vector_refuses_and_keeps_its_buffer() {
        let mut vec = FixedVec::with_capacity(2);
        assert_eq!(vec.push(1), Ok(()));
        assert_eq!(vec.push(2), Ok(()));
        let buffer = vec.items.as_ptr();
        assert_eq!(vec.push(3), Err(3));
        assert_eq!(&*vec, &[1, 2]);
        assert_eq!(vec.items.as_ptr(), buffer);
        assert_eq!(vec.swap_remove(0), 1);
        assert_eq!(vec.pop(), Some(2));
        assert_eq!(vec.pop(), None);
    }

    /// Verifies: SK-INIT-006
    #[test]
    fn a_full_deque_refuses() {
        let mut deque = FixedDeque::with_capacity(2);
        assert_eq!(deque.push_back(1), Ok(()));
        assert_eq!(deque.push_back(2), Ok(()));
        assert_eq!(deque.push_back(3), Err(3));
        assert_eq!(deque.pop_front(), Some(1));
        assert_eq!(deque.push_back(3), Ok(()));
        assert_eq!(deque.iter().copied().collect::<Vec<_>>(), [2, 3]);
        assert_eq!(deque.len(), deque.capacity());
    }
}
